//! The operator's tools: shell completions that know the jobs file, and
//! manual pages that `man` renders cleanly.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::helper::Sandbox;

const JOBS: &str = "jobs:
  nightly-import:
    description: imports the orders
    command: \"true\"
  nightly-export:
    command: \"true\"
  backup:
    command: \"true\"
flows:
  night:
    steps:
      first: {job: backup}
";

/// What bash offers for `overnight WORDS…` through the script of
/// `overnight completions bash`, run in the sandbox.
fn bash_offers(sb: &Sandbox, words: &[&str]) -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_overnight");
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <('{bin}' completions bash) || exit 9
complete -p overnight || exit 8
COMP_WORDS=({words}); COMP_CWORD={cword}
_clap_complete_overnight overnight '{current}' '{previous}'
printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        current = words[cword],
        previous = words[cword - 1],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(sb.path())
        .env_remove("OVERNIGHT_CONFIG")
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let mut lines = said.lines();
    assert_eq!(
        lines.next(),
        Some("complete -o bashdefault -o nosort -o nospace -F _clap_complete_overnight overnight"),
        "the script registers a completion for overnight"
    );
    lines.map(str::to_string).collect()
}

/// Bash completes job names for `run` from the jobs file found as the
/// command would find it, flow names for `flow start`, and the names in
/// the file `-c` names; a file changed since is read as it is now.
#[test]
fn bash_completes_job_and_flow_names_from_the_jobs_file() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", JOBS);
    assert_eq!(
        bash_offers(&sb, &["overnight", "run", "nig"]),
        ["nightly-import", "nightly-export"]
    );
    assert!(bash_offers(&sb, &["overnight", "flow", "start", ""]).contains(&"night".to_string()));

    sb.write(
        "elsewhere/other.yaml",
        "jobs:\n  rotate-logs:\n    command: \"true\"\n",
    );
    assert_eq!(
        bash_offers(
            &sb,
            &["overnight", "history", "-c", "elsewhere/other.yaml", "ro"]
        ),
        ["rotate-logs"]
    );
    sb.write(
        "overnight.yaml",
        &JOBS.replace("nightly-export", "nightly-report"),
    );
    assert_eq!(
        bash_offers(&sb, &["overnight", "logs", "night"]),
        ["nightly-import", "nightly-report"]
    );
    // A subcommand is completed too.
    assert_eq!(bash_offers(&sb, &["overnight", "compl"]), ["completions"]);
}

/// `overnight man` writes a page for every subcommand and the jobs file's
/// page, each rendered by `man -l` without a warning, readable by all.
#[test]
fn man_pages_render_without_warnings() {
    let sb = Sandbox::new();
    let out = sb.run(&["man", "pages"]);
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<_> = ["man1", "man5"]
        .iter()
        .flat_map(|section| std::fs::read_dir(sb.path().join("pages").join(section)).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    pages.sort();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "overnight.1",
        "overnight-run.1",
        "overnight-flow-start.1",
        "overnight.yaml.5",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    // `man` hides the formatter's warnings unless asked; asked, it shows
    // them, as a page with an unknown macro proves.
    let man = |page: &std::path::Path| {
        let out = Command::new("man")
            .args(["--warnings=w", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs");
        assert!(out.status.success(), "{}: {out:?}", page.display());
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let bad = sb.write("bad.1", ".TH BAD 1\n.SH NAME\nbad \\- a page\n.NOSUCH x\n");
    assert!(man(&bad).1.contains("warn"), "the check can fail");
    for page in &pages {
        let mode = std::fs::metadata(page).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", page.display());
        let (text, stderr) = man(page);
        assert!(!stderr.contains("warn"), "{}: {stderr}", page.display());
        assert!(text.contains("NAME"), "{}: {text}", page.display());
    }
    // The jobs file's page is the document: every section of it is there.
    let doc = std::fs::read_to_string(crate::helper::repo().join("docs/jobs-file.md")).unwrap();
    let page = Command::new("man")
        .arg("-l")
        .arg(sb.path().join("pages/man5/overnight.yaml.5"))
        .env("MANWIDTH", "200")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    for heading in doc.lines().filter_map(|l| l.strip_prefix("## ")) {
        assert!(
            page.contains(&heading.to_uppercase()),
            "{heading} in the page"
        );
    }
    for key in ["catch_up", "starting_deadline", "capture_max"] {
        assert!(page.contains(key), "{key} in the page");
    }
}

/// `overnight ARGS…` on a terminal `columns` wide (a pty, by util-linux's
/// `script`), what it showed with the terminal's carriage returns gone.
fn on_terminal(sb: &Sandbox, columns: u16, args: &str, env: &[(&str, &str)]) -> String {
    let bin = env!("CARGO_BIN_EXE_overnight");
    let mut script = Command::new("script");
    script
        .args([
            "-qec",
            &format!("stty cols {columns}; '{bin}' {args}"),
            "/dev/null",
        ])
        .current_dir(sb.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .env_remove("OVERNIGHT_CONFIG");
    for (name, value) in env {
        script.env(name, value);
    }
    let out = script.output().expect("script runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// Text as it shows: without the colour codes.
fn visible(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("\x1b[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('m').expect("an SGR ends with m");
        rest = &rest[start + end + 1..];
    }
    out + rest
}

/// On a terminal, `history` and `status` fit its width and colour the
/// statuses; `NO_COLOR` turns colour off; piped, they are whole and plain.
#[test]
fn tables_fit_the_terminal_and_colour_statuses_unless_piped_or_no_color() {
    let sb = Sandbox::new();
    let summary = "imported every order of every warehouse in the north-western region";
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  nightly-import-of-orders:\n    command: \"echo '::summary::{summary}'\"\n  nightly-export-of-orders:\n    command: \"exit 3\"\n"
        ),
    );
    assert!(
        sb.run(&["run", "nightly-import-of-orders"])
            .status
            .success()
    );
    assert!(
        !sb.run(&["run", "nightly-export-of-orders"])
            .status
            .success()
    );

    for (command, columns) in [("history", 72), ("status", 64), ("history", 100)] {
        let shown = on_terminal(&sb, columns, command, &[]);
        assert!(shown.contains("\x1b[32msuccess\x1b[0m"), "{shown:?}");
        assert!(shown.contains("\x1b[31mfailed\x1b[0m"), "{shown:?}");
        for line in visible(&shown).lines() {
            assert!(
                line.chars().count() <= usize::from(columns),
                "{command} at {columns} columns: {line:?}"
            );
        }
        // Cut or not, the names still tell the two jobs apart.
        let text = visible(&shown);
        let column = usize::from(command == "history");
        let names: std::collections::BTreeSet<&str> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(column))
            .collect();
        assert_eq!(names.len(), 2, "{text}");
    }
    let plain = on_terminal(&sb, 72, "history", &[("NO_COLOR", "1")]);
    assert!(!plain.contains('\x1b'), "{plain:?}");

    let piped = sb.run(&["history"]);
    let piped = String::from_utf8_lossy(&piped.stdout);
    assert!(!piped.contains('\x1b'), "{piped}");
    assert!(piped.contains(summary), "piped, nothing is cut: {piped}");
    assert!(piped.contains("nightly-export-of-orders"), "{piped}");
}

/// `logs JOB --errors` and `--warnings` print those sections of the job's
/// recent reports, a failed run's reason and stderr included; `report
/// --section` gives one section to a script, as text or JSON.
#[test]
fn errors_and_warnings_across_runs_and_one_section_for_scripts() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  errors:\n    kind: file\n    path: errors.log\n    encoder: {pattern: \"{m}{n}\"}\nloggers:\n  jobs::errors:\n    level: error\n    appenders: [errors]\n    additive: false\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\njobs:\n  load:\n    command: |\n      if [ -e second ]; then echo '::warning code=W1::slow disk'; echo 'no space' >&2; exit 4; fi\n      touch second\n      echo '::error code=E_CONN,host=wh1::refused'\n      echo '::progress::40% half'\n      echo '::detail::rows=12'\n",
    );
    assert_eq!(sb.run(&["run", "load"]).status.code(), Some(1));
    assert_eq!(sb.run(&["run", "load"]).status.code(), Some(1));

    let errors = sb.run(&["logs", "load", "--errors"]);
    let errors = String::from_utf8_lossy(&errors.stdout);
    let lines: Vec<&str> = errors.lines().collect();
    assert!(lines[0].starts_with("#1 load "), "oldest first: {errors}");
    assert_eq!(lines[1], "  error: [E_CONN] refused (host=wh1)", "{errors}");
    assert_eq!(lines[2], "  failed: exit 0, 1 error: refused", "{errors}");
    assert!(lines[3].starts_with("#2 load "), "{errors}");
    assert_eq!(lines[4], "  failed: exit 4", "{errors}");
    assert_eq!(lines[5], "  stderr: no space", "{errors}");
    assert_eq!(lines.len(), 6, "{errors}");
    // Why a run failed, and its stderr, read as the errors log has them.
    let errors_log = sb.read("errors.log");
    for line in [
        "failed: exit 0, 1 error: refused",
        "failed: exit 4",
        "stderr: no space",
    ] {
        assert!(
            errors_log.lines().any(|l| l == line),
            "{line:?} in {errors_log}"
        );
    }

    let warnings = sb.run(&["logs", "load", "--warnings", "--limit", "1"]);
    let warnings = String::from_utf8_lossy(&warnings.stdout);
    assert_eq!(
        warnings.lines().nth(1),
        Some("  warning: [W1] slow disk"),
        "{warnings}"
    );
    assert_eq!(warnings.lines().count(), 2, "{warnings}");

    let follow = sb.run(&["logs", "load", "--errors", "-f"]);
    assert_eq!(follow.status.code(), Some(2), "{follow:?}");

    let section = |args: &[&str]| {
        let out = sb.run(&[&["report", "1", "--section"], args].concat());
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(section(&["status"]), "failed\n");
    assert_eq!(
        section(&["errors"]),
        "error: [E_CONN] refused (host=wh1)\nfailed: exit 0, 1 error: refused\n"
    );
    assert_eq!(section(&["progress"]), "40% half\n");
    let details: serde_json::Value = serde_json::from_str(&section(&["details"])).unwrap();
    assert_eq!(details["rows"], "12");
    let errors: serde_json::Value = serde_json::from_str(&section(&["errors", "--json"])).unwrap();
    assert_eq!(errors[0]["fields"]["host"], "wh1");
    assert!(section(&["log"]).contains("::progress::40% half"));
    assert_eq!(section(&["warnings"]), "", "run 1 warned of nothing");
}
