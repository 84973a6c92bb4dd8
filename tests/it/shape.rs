//! The code's shape, checked like behaviour: layers point one way, the module graph has no
//! cycle, no source file is over 600 lines and no function over 80 (unit tests excluded).
//! `EFS2ATLAS_PRINT_GRAPH=1 cargo test shape -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, top to bottom: a module may use its own layer's modules or lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    ("cli", &["cli"]),
    ("commands", &["commands"]),
    ("engine", &["engine"]),
    (
        "adapters",
        &[
            "mongo", "atlas", "discover", "deploy", "cleanup", "fargate", "ecr", "aws",
        ],
    ),
    // No I/O: plain data and pure functions every layer shares.
    (
        "core",
        &[
            "world", "taskdef", "uri", "secret", "envmap", "units", "cancel", "watch", "error",
        ],
    ),
];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// The tree checked: this crate's `src`, or another (`EFS2ATLAS_SHAPE_SRC`, to compare).
fn src() -> PathBuf {
    std::env::var_os("EFS2ATLAS_SHAPE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`; the crate roots are `""`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return String::new();
    }
    parts.join("::")
}

/// The file's code without its unit tests (everything from the first `#[cfg(test)]`).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("\n#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Splits `text` at each `::`-joined path starting at `prefix` (e.g. `crate::`).
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// The modules `module` (whose code is `text`) refers to.
fn uses(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let resolve = |segments: Vec<String>| -> Option<String> {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|m| known.contains(m))
    };
    let mut out = BTreeSet::new();
    let here: Vec<String> = module.split("::").map(String::from).collect();
    for p in paths_after(text, "crate::") {
        out.extend(resolve(p.iter().map(|s| s.to_string()).collect()));
    }
    for p in paths_after(text, "super::") {
        let mut segs = here[..here.len().saturating_sub(1)].to_vec();
        segs.extend(p.iter().map(|s| s.to_string()));
        out.extend(resolve(segs));
    }
    // A parent's own mention of a declared child (`copy::run`) is an edge too.
    for line in text.lines() {
        let l = line.trim();
        if let Some(name) = l
            .strip_prefix("pub mod ")
            .or_else(|| l.strip_prefix("mod "))
            .and_then(|r| r.strip_suffix(';'))
        {
            let child = if module.is_empty() {
                name.to_string()
            } else {
                format!("{module}::{name}")
            };
            let mentioned = text
                .lines()
                .filter(|x| {
                    !x.trim_start().starts_with("pub mod ") && !x.trim_start().starts_with("mod ")
                })
                .any(|x| !paths_after(x, &format!("{name}::")).is_empty());
            if mentioned && known.contains(&child) {
                out.insert(child);
            }
        }
    }
    out.remove(module);
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let known: BTreeSet<String> = all.iter().map(|p| module_of(p)).collect();
    all.iter()
        .map(|p| {
            let m = module_of(p);
            let u = uses(&m, &code(p), &known);
            (m, u)
        })
        .filter(|(m, _)| !m.is_empty())
        .collect()
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS
        .iter()
        .position(|(_, mods)| mods.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_module_graph_has_no_cycle_and_layers_point_down() {
    let g = graph();
    if std::env::var_os("EFS2ATLAS_PRINT_GRAPH").is_some() {
        for (m, uses) in &g {
            let u: Vec<&str> = uses.iter().map(String::as_str).collect();
            println!("{m:<28} -> {}", u.join(", "));
        }
    }
    let cycles = cycles(&g);
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
    let mut upward = Vec::new();
    for (m, uses) in &g {
        for u in uses {
            if layer_of(u) < layer_of(m) {
                upward.push(format!(
                    "{m} ({}) uses {u} ({})",
                    LAYERS[layer_of(m)].0,
                    LAYERS[layer_of(u)].0
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:#?}");
    println!("{} modules, no cycle, every import points down", g.len());
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let known: BTreeSet<String> = ["a", "a::x", "b"].iter().map(|s| s.to_string()).collect();
    let mut g = BTreeMap::new();
    g.insert(
        "a".to_string(),
        uses("a", "pub mod x;\nfn f() { x::go() }", &known),
    );
    g.insert(
        "a::x".to_string(),
        uses("a::x", "use crate::b::Thing;", &known),
    );
    g.insert("b".to_string(), uses("b", "use super::a::Other;", &known));
    assert_eq!(cycles(&g), vec![vec!["a", "a::x", "b"]]);
}

/// Functions longer than the limit: (file, line, name, lines).
fn long_functions(path: &Path, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(crate) async fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        if !is_fn || t.ends_with(';') {
            continue;
        }
        let indent = &l[..l.len() - t.len()];
        let close = format!("{indent}}}");
        let Some(end) = lines[i..].iter().position(|x| *x == close) else {
            continue;
        };
        if end + 1 > MAX_FN_LINES {
            let name = t.split('(').next().unwrap_or(t);
            out.push(format!(
                "{}:{} {name} ({} lines)",
                path.display(),
                i + 1,
                end + 1
            ));
        }
    }
    out
}

#[test]
fn no_file_over_600_lines_and_no_function_over_80() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut big = Vec::new();
    for p in &all {
        let text = code(p);
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            big.push(format!("{} ({n} lines)", p.display()));
        }
        big.extend(long_functions(p, &text));
    }
    assert!(big.is_empty(), "too big: {big:#?}");
}

/// The IAM action of every AWS call in `text` (whitespace removed): the SDK calls made on a
/// client field (`aws.ecs.describe_services()`) and the action each failure names
/// (`aws_error("ecr:DescribeImages", …)`).
fn aws_actions(text: &str) -> BTreeSet<String> {
    const SERVICES: &[(&str, &str)] = &[
        ("ecs", "ecs"),
        ("efs", "elasticfilesystem"),
        ("ec2", "ec2"),
        ("sts", "sts"),
        ("secrets", "secretsmanager"),
        ("iam", "iam"),
        ("logs", "logs"),
        ("ecr", "ecr"),
    ];
    // Methods of the fields that are not AWS calls.
    const NOT_CALLS: &[&str] = &["iter", "as_ref", "clone", "config", "is_empty", "len"];
    let flat: String = text.split_whitespace().collect();
    let mut out = BTreeSet::new();
    for (field, prefix) in SERVICES {
        for (i, _) in flat.match_indices(&format!(".{field}.")) {
            let rest = &flat[i + field.len() + 2..];
            let op: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if op.is_empty() || !rest[op.len()..].starts_with("()") || NOT_CALLS.contains(&&*op) {
                continue;
            }
            let pascal: String = op
                .split('_')
                .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
                .collect();
            out.insert(format!("{prefix}:{pascal}"));
        }
    }
    for (i, _) in flat.match_indices("aws_error(\"") {
        let rest = &flat[i + "aws_error(\"".len()..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn the_iam_policy_allows_every_aws_call_the_code_makes_and_no_more() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iam-policy.json"))
            .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut allowed = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                allowed.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                allowed.extend(list.iter().map(|a| a.as_str().unwrap().to_string()));
            }
            other => panic!("a statement's Action is {other}"),
        }
    }
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut actions = BTreeSet::new();
    for p in &all {
        actions.extend(aws_actions(&code(p)));
    }
    assert!(
        actions.contains("ecr:DescribeImages") && actions.contains("ecs:RunTask"),
        "the scan finds calls: {actions:#?}"
    );
    let missing: Vec<&String> = actions.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/iam-policy.json does not allow {missing:?} (docs/iam.md says why each is needed)"
    );
    // Least privilege: nothing the code never asks for, beyond what AWS checks on its own
    // (the tags given at creation, the roles a task definition passes).
    let implicit = [
        "ecs:TagResource",
        "secretsmanager:TagResource",
        "iam:PassRole",
    ];
    let unused: Vec<&String> = allowed
        .difference(&actions)
        .filter(|a| !implicit.contains(&a.as_str()))
        .collect();
    assert!(
        unused.is_empty(),
        "docs/iam-policy.json allows {unused:?}, which efs2atlas never calls"
    );
}
