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
