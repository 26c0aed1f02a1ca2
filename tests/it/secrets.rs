//! Secrets stay secret: no environment value of a job in the stored
//! definitions, no variable the jobs file keeps a secret in handed to a
//! job or a trigger program.

use crate::helper::{Sandbox, TestDaemon, text};

/// `env: {PASSWORD: …}` is stored as a digest: the database's bytes never
/// hold the value, and a changed value still changes the definition.
#[tokio::test(flavor = "multi_thread")]
async fn job_environment_values_are_not_stored_in_clear() {
    let file = |password: &str| {
        format!(
            "listen: 127.0.0.1:0\njobs:\n  load:\n    command: 'true'\n    env: {{PASSWORD: {password}}}\n"
        )
    };
    let daemon = TestDaemon::start(&file("hunter2-tr0ub4dor")).await;
    let sb = daemon.stop().await;
    let state = sb.path().join(".overnight");
    let stored = |name: &str| std::fs::read(state.join(name)).unwrap_or_default();
    let raw = [stored("overnight.db"), stored("overnight.db-wal")].concat();
    assert!(!raw.is_empty());
    assert!(
        !raw.windows(9).any(|w| w == b"hunter2-t"),
        "the password is in the database's bytes"
    );
    let config = overnight::config::Config::load(&sb.path().join("overnight.yaml")).unwrap();
    let key = std::fs::read(state.join("definition-key")).unwrap();
    assert_eq!(key.len(), 32);
    let before = config.jobs[0].definition(&key);
    assert!(before.contains("\"PASSWORD\":\"hmac:"), "{before}");
    assert!(!before.contains("hunter2"), "{before}");
    sb.write("overnight.yaml", &file("correct-horse"));
    let config = overnight::config::Config::load(&sb.path().join("overnight.yaml")).unwrap();
    assert_ne!(
        config.jobs[0].definition(&key),
        before,
        "a change still shows"
    );
}

/// The webhook's `${HOOK_SECRET}` and the SMTP password's variable are in
/// the runner's environment, yet neither the job nor a trigger program
/// sees them; a variable the file does not use for a secret still passes.
#[test]
fn variables_holding_secrets_are_not_inherited_by_jobs_or_trigger_programs() {
    let sb = Sandbox::new();
    let seen = sb.path().join("seen");
    sb.write(
        "overnight.yaml",
        &format!(
            "smtp: {{host: 127.0.0.1, port: 9, tls: none, from: a@b.example, username_env: SMTP_USER, password_env: SMTP_PASS}}\n\
             triggers:\n  - name: hook\n    on: [success]\n    webhook: {{url: 'http://127.0.0.1:9/hook', secret: '${{HOOK_SECRET}}'}}\n\
             \x20 - name: prog\n    on: [success]\n    run: [sh, -c, 'echo \"prog=$HOOK_SECRET,$SMTP_PASS,$PLAIN\" >> {seen}']\n\
             jobs:\n  look:\n    command: echo \"job=$HOOK_SECRET,$SMTP_PASS,$PLAIN\" >> {seen}\n",
            seen = seen.display()
        ),
    );
    let out = sb
        .command(&["run", "look"])
        .env("HOOK_SECRET", "s3cret-key")
        .env("SMTP_PASS", "pa55word")
        .env("PLAIN", "visible")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let seen = sb.read("seen");
    assert!(seen.contains("job=,,visible"), "{seen}");
    assert!(seen.contains("prog=,,visible"), "{seen}");
}
