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
