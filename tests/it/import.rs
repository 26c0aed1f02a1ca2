//! `overnight import-crontab`: a real crontab in, a jobs file out that
//! passes `check` and fires when the crontab did.

use chrono::{DateTime, Utc};
use overnight::config::Config;
use overnight::zone::Zone;

use std::os::unix::fs::PermissionsExt;

use crate::helper::{Sandbox, text};

/// A varied real crontab; also a seed of the crontab fuzz test.
pub(crate) const CRONTAB: &str = r#"# Nightly work for the warehouse
SHELL=/bin/sh
PATH=/usr/local/bin:/usr/bin:/bin
MAILTO=ops@example.com

# Back up the database
30 2 * * * /usr/local/bin/backup.sh --full
@hourly /usr/local/bin/rotate-logs
@daily cd /srv/app && ./bin/rake reports:nightly
@weekly /usr/local/bin/backup.sh --weekly
@monthly /usr/bin/find /tmp -mtime +30 -delete
@yearly echo happy new year
*/15 9-17 * * mon-fri /usr/local/bin/poll-orders
0 0 13 * FRI echo friday the thirteenth
5/20 * * * * /usr/bin/true
0 6 1,15 jan-jun * /usr/local/bin/report --half-year
0 22 * * 1-5 date +\%F > last-weekday
15 3 * * * cat%first line%second line

MAILTO=""
CRON_TZ=America/New_York
0 9 * * * /usr/local/bin/ny-open
45 16 * * MON-FRI /usr/local/bin/ny-close
GREETING=hello there
0 12 L * * echo $GREETING
@reboot /usr/local/bin/warm-cache
"#;

#[test]
fn a_varied_crontab_imports_into_a_checked_file_with_equal_fire_times() {
    let sb = Sandbox::new();
    let crontab = sb.write("crontab", CRONTAB);
    let out = sb.run(&["import-crontab", crontab.to_str().unwrap()]);
    let (yaml, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let file = sb.write("overnight.yaml", &yaml);
    let check = sb.run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}\n{yaml}", text(&check).1);

    let config = Config::load(&file).unwrap();
    let job_lines: Vec<&str> = CRONTAB
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@'))
        .collect();
    assert!(job_lines.len() >= 15, "at least 15 job lines");
    assert_eq!(config.jobs.len(), job_lines.len(), "{yaml}");

    let from = "2026-02-27T12:00:00Z";
    for (job, line) in config.jobs.iter().zip(&job_lines) {
        let expr = if line.starts_with('@') {
            line.split_whitespace().next().unwrap().to_string()
        } else {
            line.split_whitespace()
                .take(5)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let schedule = job.schedule.as_ref().unwrap();
        if schedule.is_reboot() {
            assert_eq!(expr, "@reboot");
            continue;
        }
        let zone = job.timezone.to_string();
        let next = sb.run(&[
            "next", &expr, "--tz", &zone, "--from", from, "--count", "50",
        ]);
        let want: Vec<String> = text(&next).0.lines().map(String::from).collect();
        assert_eq!(want.len(), 50, "`{expr}`: {}", text(&next).1);
        let mut at: DateTime<Utc> = from.parse().unwrap();
        let got: Vec<String> = (0..50)
            .map(|_| {
                at = schedule.next_after(at).unwrap();
                at.with_timezone(&job.timezone).to_rfc3339()
            })
            .collect();
        assert_eq!(got, want, "job `{}` from `{line}`", job.name);
    }

    let job = |name: &str| {
        config
            .job(name)
            .unwrap_or_else(|| panic!("no job `{name}` in\n{yaml}"))
    };
    assert_eq!(
        job("backup.sh").description.as_deref(),
        Some("Back up the database")
    );
    assert_eq!(job("backup.sh").mailto.as_deref(), Some("ops@example.com"));
    assert_eq!(
        job("backup.sh-2").schedule.as_ref().unwrap().to_string(),
        "@weekly"
    );
    assert_eq!(job("rake").env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(job("ny-open").timezone, Zone::named("America/New_York"));
    assert_eq!(job("ny-open").mailto.as_deref(), Some(""));
    assert_eq!(job("echo-3").env["GREETING"], "hello there");
    assert!(
        !job("backup.sh").env.contains_key("GREETING"),
        "env lines apply to the lines after them"
    );
    assert!(
        yaml.contains("defaults:\n  env:\n    \"PATH\""),
        "shared variables go to defaults:\n{yaml}"
    );

    // cron's `%`: the rest of the line is the command's standard input.
    let run = sb.run(&["run", "cat"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run).0);
    let (logs, _) = text(&sb.run(&["logs", "cat"]));
    assert_eq!(logs, "first line\nsecond line\n");
    let run = sb.run(&["run", "date"]);
    assert_eq!(run.status.code(), Some(0));
    let day = sb.read("last-weekday");
    assert!(
        day.trim().len() == 10,
        "`\\%` is a plain percent sign: {day:?}"
    );
}

#[test]
fn system_crontab_user_field_and_bad_lines() {
    let sb = Sandbox::new();
    let system = sb.write(
        "crontab",
        "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
    );
    let out = sb.run(&["import-crontab", "--system", system.to_str().unwrap()]);
    let (yaml, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(yaml.contains("    user: \"root\"\n"), "{yaml}");
    assert!(yaml.contains("\"run-parts\":"), "{yaml}");

    let bad = sb.write("bad", "0 0 32 * * echo\nnonsense\n* * * * *\n");
    let out = sb.run(&["import-crontab", bad.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with(
            "bad:1:1: bad schedule: day-of-month: 32 is out of range 1-31 in \"0 0 32 * *\""
        ),
        "{stderr}"
    );
    assert!(lines[1].contains("bad:2:1: not a job line"), "{stderr}");
    assert!(
        lines[2].contains("bad:3:1: the line has a schedule but no command"),
        "{stderr}"
    );
}

#[test]
fn reads_standard_input() {
    use std::io::Write;
    let sb = Sandbox::new();
    let mut child = sb
        .command(&["import-crontab"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"0 1 * * * /bin/nightly\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(text(&out).0.contains("\"nightly\":"));
}

/// Redirections that hide a command's output from overnight are warned
/// about, on stderr and beside the job; an all-commented crontab imports
/// to an empty, valid jobs file that keeps its comments.
#[test]
fn hidden_output_is_warned_about_and_comments_alone_import_empty() {
    let sb = Sandbox::new();
    let crontab = sb.write(
        "crontab",
        "0 2 * * * /usr/local/bin/backup.sh > /dev/null 2>&1\n*/5 * * * * echo \"a > b\"\n",
    );
    let out = sb.run(&["import-crontab", crontab.to_str().unwrap()]);
    let (yaml, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(":1: `> /dev/null 2>&1` keeps the output of `backup.sh` from overnight"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "a quoted `>` is text: {stderr}");
    assert!(
        yaml.contains("# line 1: > /dev/null 2>&1 keeps the output"),
        "{yaml}"
    );

    let commented = sb.write("commented", "# 0 2 * * * old-backup.sh\n# retired in May\n");
    let out = sb.run(&["import-crontab", commented.to_str().unwrap()]);
    let (yaml, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("has no job line"), "{stderr}");
    assert!(
        yaml.contains("# 0 2 * * * old-backup.sh\n# retired in May\njobs: {}\n"),
        "{yaml}"
    );
    sb.write("overnight.yaml", &yaml);
    let check = sb.run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{:?}", text(&check));
}

/// `--machine` gathers what cron reads: `/etc/crontab`, `/etc/cron.d/*`
/// (not the names cron skips) and each user's crontab (its spool header
/// dropped), each job run as cron ran it; the file passes `check`.
/// `--user` marks a piped crontab as one user's.
#[test]
fn a_whole_machine_imports_into_one_file_each_job_as_its_user() {
    let sb = Sandbox::new();
    sb.write(
        "machine/etc/crontab",
        "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
    );
    sb.write(
        "machine/etc/cron.d/backup-tool",
        "# the nightly backup\n30 2 * * * root /usr/bin/backup-tool --all\n0 4 * * 0 nobody /usr/bin/backup-tool --verify\n",
    );
    sb.write(
        "machine/etc/cron.d/backup-tool.dpkg-old",
        "* * * * * root echo old\n",
    );
    let spool = sb.write(
        "machine/var/spool/cron/crontabs/nobody",
        "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# (/tmp/crontab.x installed on Mon Nov 30 10:00:00 2026)\n# (Cron version -- $Id: crontab.c,v 2.13 1994/01/17 03:20:37 vixie Exp $)\n# rotate the reports\n0 1 * * * /usr/bin/rotate-reports\n",
    );
    // Cron reads a user's crontab when the user owns it, alone.
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = crate::helper::is_root();
    if root {
        std::os::unix::fs::chown(&spool, Some(65534), None).unwrap();
    }
    // What cron would not read: a user who does not exist, a `cron.d` file
    // others may write. What it follows: a link in `cron.d`.
    sb.write(
        "machine/var/spool/cron/crontabs/first.last",
        "0 3 * * * echo gone\n",
    );
    let loose = sb.write("machine/etc/cron.d/loose", "0 5 * * * root echo loose\n");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o664)).unwrap();
    sb.write(
        "machine/shared-crontab",
        "0 6 * * * root /usr/bin/linked-tool\n",
    );
    std::os::unix::fs::symlink(
        "../../shared-crontab",
        sb.path().join("machine/etc/cron.d/linked"),
    )
    .unwrap();
    let out = sb.run(&["import-crontab", "--machine", "--root", "machine"]);
    let (yaml, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("first.last` not imported: no user `first.last` on this machine"),
        "{stderr}"
    );
    assert!(
        stderr.contains("loose` not imported: cron reads it only when root owns it"),
        "{stderr}"
    );
    assert!(
        !yaml.contains("echo gone") && !yaml.contains("echo loose"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  \"linked\":\n    schedule: \"0 6 * * *\"\n"),
        "{yaml}"
    );
    if !root {
        assert!(
            stderr.contains(
                "nobody` not imported: cron reads a user's crontab only when the user owns it"
            ),
            "{stderr}"
        );
        return;
    }
    for expected in [
        "  \"run-parts\":\n    schedule: \"17 * * * *\"\n    user: \"root\"\n",
        "  \"backup-tool\":\n    description: \"the nightly backup\"\n",
        "  \"backup-tool-2\":\n    schedule: \"0 4 * * 0\"\n    user: \"nobody\"\n",
        "  \"nobody-rotate-reports\":\n    description: \"rotate the reports\"\n    schedule: \"0 1 * * *\"\n    user: \"nobody\"\n",
        "# from machine/var/spool/cron/crontabs/nobody:5",
    ] {
        assert!(yaml.contains(expected), "{expected:?} in:\n{yaml}");
    }
    assert!(
        !yaml.contains("echo old"),
        "a .dpkg-old file is not read: {yaml}"
    );
    assert!(!yaml.contains("DO NOT EDIT"), "{yaml}");
    sb.write("overnight.yaml", &yaml);
    let check = sb.run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{:?}", text(&check));
    assert!(text(&check).0.contains("as nobody"), "{:?}", text(&check));

    let piped = sb
        .command(&["import-crontab", "--user", "nobody"])
        .stdin(
            std::fs::File::open(sb.path().join("machine/var/spool/cron/crontabs/nobody")).unwrap(),
        )
        .output()
        .unwrap();
    let (yaml, _) = text(&piped);
    assert!(yaml.contains("  \"rotate-reports\":\n"), "{yaml}");
    assert!(yaml.contains("    user: \"nobody\"\n"), "{yaml}");
}
