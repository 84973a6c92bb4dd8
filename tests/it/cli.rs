//! The command line's conventions: AWS flags grouped and listed only where AWS is called (and
//! still accepted anywhere), examples, shell completions, the manual page, and colour only
//! when asked for or on a terminal.

use crate::common::Cmd;

#[test]
fn aws_flags_are_grouped_and_listed_only_on_commands_that_call_aws() {
    let plan = Cmd::new(&["plan", "--help"]).run();
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let aws = plan.stdout.find("AWS:").expect("an AWS heading");
    for flag in ["--region", "--profile", "--aws-timeout"] {
        let at = plan.stdout.find(flag).unwrap_or_else(|| panic!("{flag}"));
        assert!(
            at > aws,
            "{flag} is under the AWS heading:\n{}",
            plan.stdout
        );
    }
    for cmd in ["copy", "verify", "sync", "status"] {
        let r = Cmd::new(&[cmd, "--help"]).run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        for flag in ["--region", "--profile", "--aws-timeout"] {
            assert!(!r.stdout.contains(flag), "{cmd} --help lists {flag}");
        }
    }
    // Still global: a script that puts them before a data command keeps working.
    let r = Cmd::new(&[
        "--region",
        "eu-west-1",
        "status",
        "--journal",
        "/nonexistent/j.json",
    ])
    .run();
    assert!(!r.stderr.contains("unexpected argument"), "{}", r.stderr);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let r = Cmd::new(&["--help"]).run();
    assert_eq!(r.code, 0);
    for want in [
        "Examples:",
        "efs2atlas migrate --cluster",
        "Exit codes:",
        "completions",
    ] {
        assert!(r.stdout.contains(want), "{want} missing:\n{}", r.stdout);
    }
    let v = Cmd::new(&["verify", "--help"]).run();
    assert!(
        !v.stdout.contains("to write to"),
        "verify's target is compared, not written: {}",
        v.stdout
    );
}

#[test]
fn completions_and_the_manual_page_are_printed() {
    for (shell, want) in [
        ("bash", "_efs2atlas"),
        ("zsh", "#compdef efs2atlas"),
        ("fish", "complete -c efs2atlas"),
    ] {
        let r = Cmd::new(&["completions", shell]).run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains(want),
            "{shell}: {}",
            &r.stdout[..r.stdout.len().min(300)]
        );
        assert!(
            r.stdout.contains("migrate"),
            "{shell} completes the commands"
        );
    }
    let man = Cmd::new(&["man"]).run();
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH efs2atlas"),
        "{}",
        &man.stdout[..200]
    );
    let bad = Cmd::new(&["completions", "tcsh"]).run();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn colour_only_when_asked_for_or_on_a_terminal() {
    // Piped (no terminal): no escape codes, in help, errors or plan-like output.
    let r = Cmd::new(&["status", "--journal", "/nonexistent/j.json"]).run();
    assert!(!r.stderr.contains('\x1b'), "{:?}", r.stderr);
    // --color never beats a terminal; NO_COLOR is honoured; --color always colours a pipe.
    let r = Cmd::new(&[
        "--color",
        "always",
        "status",
        "--journal",
        "/nonexistent/j.json",
    ])
    .run();
    assert_eq!(r.code, 2, "{}", r.stderr);
    let bad = Cmd::new(&["--color", "sometimes", "status"]).run();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("always"), "{}", bad.stderr);
}

/// Each command's own help ends with real examples of that command (people read the help of
/// the command they are about to run), and the flags every command takes stand under their
/// own heading, apart from the command's options.
#[test]
fn every_command_s_help_has_examples_of_that_command() {
    for cmd in [
        "plan",
        "migrate",
        "resume",
        "status",
        "copy",
        "verify",
        "sync",
        "rollback",
        "completions",
        "man",
    ] {
        let r = Cmd::new(&[cmd, "--help"]).run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        let out = &r.stdout;
        let examples = out
            .find("Examples:")
            .unwrap_or_else(|| panic!("{cmd} --help has no examples:\n{out}"));
        let lines: Vec<&str> = out[examples..]
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&format!("efs2atlas {cmd}")))
            .collect();
        assert!(
            (1..=4).contains(&lines.len()),
            "{cmd}: {} example lines:\n{out}",
            lines.len()
        );
        // Every example parses: the flags it shows exist.
        for l in &lines {
            let args = shell_words(l);
            if args
                .iter()
                .any(|a| a.contains('>') || a == "|" || a == "&&")
            {
                continue;
            }
            let mut probe: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            probe.push("--help");
            let p = Cmd::new(&probe).run();
            assert_eq!(p.code, 0, "{l}: {}", p.stderr);
        }
        let global = out
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd}: no Global options heading:\n{out}"));
        let own = out.find("Options:").unwrap_or(0);
        for flag in ["--verbose", "--quiet", "--no-progress", "--color"] {
            let at = out.find(flag).unwrap_or_else(|| panic!("{cmd}: {flag}"));
            assert!(
                at > global && global > own,
                "{cmd}: {flag} under Global options:\n{out}"
            );
        }
    }
    let r = Cmd::new(&["migrate", "--help"]).run();
    assert!(r.stdout.contains("Exit codes:"), "{}", r.stdout);
}

/// A command line split as a shell would, for the simple quoting the examples use.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}
