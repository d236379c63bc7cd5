//! The `tocsin` binary: `check` and `notify`, their output and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tocsin_tests::forge::Forge;
use tocsin_tests::webhook::{Reply, Webhook};
use tocsin_tests::{fixture, plugins};

fn tocsin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .env("TOCSIN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_line(output: &Output) -> Value {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn repo_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn notify_log_prints_aodhs_line() {
    let output = tocsin(&[
        "notify",
        "--plugin",
        "log",
        "--action",
        "log://",
        "--alarm",
        &repo_file("examples/alarm.json"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report = json_line(&output);
    assert_eq!(report["outcome"], "delivered");
    assert_eq!(report["error"], Value::Null);
    let aodh = std::fs::read_to_string(fixture("aodh-notifier-log-lines.txt")).unwrap();
    let aodh = aodh.lines().find_map(|l| l.strip_prefix("INFO aodh.notifier.log ")).unwrap();
    assert_eq!(report["logs"][0]["message"], aodh);
}

/// The text log (at debug) of `tocsin notify` running the `log` notifier
/// for the example alarm changed by `change`.
fn text_log_of_log_notify(change: impl FnOnce(&mut Value)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let alarm = dir.path().join("alarm.json");
    let mut fields: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("examples/alarm.json")).unwrap()).unwrap();
    change(&mut fields);
    std::fs::write(&alarm, fields.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["--log-format", "text", "notify", "--plugin", "log", "--action", "log://", "--alarm"])
        .arg(&alarm)
        .env("TOCSIN_LOG", "tocsin=debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    String::from_utf8(output.stderr).unwrap()
}

/// A terminal escape in an alarm's id or name, from the broker, reaches the
/// text log escaped wherever it is written: in the plugin's line (escaped
/// by the log capability), in the span and the fields around it (by the log
/// setup's field formatter, which tracing-subscriber's own sanitising of
/// the message alone would not cover).
#[test]
fn a_terminal_escape_in_an_alarm_reaches_the_text_log_escaped() {
    let stderr = text_log_of_log_notify(|fields| {
        fields["alarm_id"] = "id-\u{1b}]0;owned\u{7}".into();
        fields["alarm_name"] = "name-\u{1b}[31mred".into();
    });
    assert!(!stderr.contains(['\u{1b}', '\u{7}']), "no raw control character: {stderr:?}");
    let line = stderr.lines().find(|line| line.contains("Notifying alarm")).expect("the plugin's line");
    let id = r"id-\u{1b}]0;owned\u{7}";
    // The plugin's line is quoted, its escapes escaped again.
    let quoted = r"Notifying alarm name-\\u{1b}[31mred id-\\u{1b}]0;owned\\u{7} of critical";
    assert!(line.contains(&format!("\"{quoted}")), "{line}");
    assert!(line.contains(&format!("sandbox{{plugin=log tenant=\"\" alarm_id={id} ")), "the span: {line}");
}

/// Issue 20, finding 2: in the text log a plugin's line is quoted, so that
/// text it writes cannot read as the line's own fields. At e8aba4b the
/// line was bare: an alarm named `x" plugin="forged` made the `log`
/// notifier's line carry `plugin="forged"` before its real `plugin` field.
#[test]
fn a_plugins_line_cannot_pose_as_the_text_logs_own_fields() {
    let stderr =
        text_log_of_log_notify(|fields| fields["alarm_name"] = r#"x" plugin="forged" tenant="other"#.into());
    let line = stderr.lines().find(|line| line.contains("Notifying alarm")).expect("the plugin's line");
    assert!(!line.contains(r#" plugin="forged""#), "the plugin's text reads as a field: {line}");
    assert!(line.contains(r#": "Notifying alarm x\" plugin=\"forged\" tenant=\"other "#), "{line}");
    assert!(
        line.contains(r#"97.0." plugin="log" alarm_id=""#),
        "the line's own fields follow the text: {line}"
    );
}

#[tokio::test]
async fn notify_http_posts_to_an_allowed_loopback_host() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let action = hook.url("/alarm?x=1");
    let output = tokio::task::spawn_blocking(move || {
        tocsin(&["notify", "--plugin", "http", "--action", &action, "--allow-host", "127.0.0.1"])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report = json_line(&output);
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/alarm?x=1");
    assert_eq!(received[0].header("x-openstack-request-id"), report["request_id"].as_str());
    assert_eq!(report["http_requests"], 1);
}

#[tokio::test]
async fn notify_http_without_allow_host_is_denied_and_exits_1() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let action = hook.url("/alarm");
    let output =
        tokio::task::spawn_blocking(move || tocsin(&["notify", "--plugin", "http", "--action", &action]))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json_line(&output);
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["error"]["kind"], "permanent");
    assert!(report["error"]["message"].as_str().unwrap().contains("egress policy refused"), "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let why = stderr.lines().find(|line| line.contains("The egress policy refused a plugin's request"));
    assert!(why.is_some_and(|line| line.contains("class=\"loopback\"")), "the log says why: {stderr}");
    assert!(hook.received().is_empty());
}

#[test]
fn notify_reports_the_limit_a_plugin_hit() {
    let output = tocsin(&["notify", "--plugin", plugins::SPIN, "--action", "spin://"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json_line(&output);
    assert_eq!(report["plugin"], "tocsin_plugin_spin");
    assert_eq!(report["error"]["kind"], "limit");
    assert_eq!(report["error"]["limit"], "cpu");
    assert_eq!(report["error"]["retryable"], false);
    assert_eq!(report["limits_hit"], serde_json::json!(["cpu"]));
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("alarm.json");
    std::fs::write(&bad_json, "{not json").unwrap();
    let missing = dir.path().join("missing.json");
    let cases: [(&[&str], &str); 4] = [
        (
            &["notify", "--plugin", "log", "--action", "log://", "--alarm", bad_json.to_str().unwrap()],
            "invalid alarm JSON",
        ),
        (
            &["notify", "--plugin", "log", "--action", "log://", "--alarm", missing.to_str().unwrap()],
            "cannot read alarm file",
        ),
        (&["notify", "--plugin", "nosuch", "--action", "log://"], "unknown plugin"),
        (&["notify", "--plugin", plugins::SOCKETS, "--action", "x://"], "wasi:sockets"),
    ];
    for (args, expected) in cases {
        let output = tocsin(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = tocsin(&["notify", "--plugin", "log"]);
    assert_eq!(output.status.code(), Some(2), "clap usage error");

    let impostor = dir.path().join("http.wasm");
    std::fs::write(&impostor, tocsin::registry::builtin::LOG).unwrap();
    let output = tocsin(&["notify", "--plugin", impostor.to_str().unwrap(), "--action", "http://h/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("name of a built-in"));

    let output =
        tocsin(&["notify", "--plugin", "http", "--action", "http://127.0.0.1/", "--allow-host", "127.1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"127.0.0.1\""), "suggests the URL form");
}

#[test]
fn check_accepts_a_notifier_and_refuses_what_it_must_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.wasm");
    std::fs::write(&log, tocsin::registry::builtin::LOG).unwrap();
    let output = tocsin(&["check", log.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let report = json_line(&output);
    assert_eq!(report["valid"], true);
    assert_eq!(report["exports"], serde_json::json!(["tocsin:notifier/handler@0.1.0"]));
    assert!(report["imports"].as_array().unwrap().iter().any(|i| i == "tocsin:notifier/log@0.1.0"));

    let output = tocsin(&["check", plugins::SOCKETS]);
    assert_eq!(output.status.code(), Some(1));
    let report = json_line(&output);
    assert_eq!(report["valid"], false);
    assert!(report["error"].as_str().unwrap().contains("import wasi:sockets/"), "{report}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let output = tocsin(&["check", core.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(json_line(&output)["error"].as_str().unwrap().contains("not a WebAssembly component"));

    let output = tocsin(&["check", dir.path().join("absent.wasm").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
}

/// `check` compiles a file as an upload is compiled: the checks before
/// compiling, the `[uploads]` limits, the confined child. At e8aba4b it
/// compiled in-process without limits: the wrong signature was `valid`,
/// and the 100k-function bomb compiled on every core (10 s, 750 MB).
#[test]
fn check_compiles_as_an_upload_is_compiled_within_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, forge: Forge| {
        let path = dir.path().join(name);
        std::fs::write(&path, forge.component()).unwrap();
        path.display().to_string()
    };
    let wrong = file("wrong.wasm", Forge { wrong_signature: true, ..Forge::default() });
    let bomb = file("bomb.wasm", Forge { bomb_functions: 100_000, bomb_repeats: 2, ..Forge::default() });
    let error = |output: &std::process::Output| json_line(output)["error"].as_str().unwrap().to_owned();

    // A refusal's detail is the uploader's to choose (here a 20,000-byte
    // import name): it comes back from the compiler cut to 2 KiB.
    let long_import = dir.path().join("long-import.wasm");
    let mut types = wasm_encoder::ComponentTypeSection::new();
    types.instance(&wasm_encoder::InstanceType::new());
    let mut imports = wasm_encoder::ComponentImportSection::new();
    imports.import(format!("evil:pkg/{}", "x".repeat(20_000)), wasm_encoder::ComponentTypeRef::Instance(0));
    let mut component = wasm_encoder::Component::new();
    component.section(&types).section(&imports);
    std::fs::write(&long_import, component.finish()).unwrap();
    let output = tocsin(&["check", long_import.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let refused = error(&output);
    assert!(refused.starts_with("import evil:pkg/xxx") && refused.len() < 2_500, "{} bytes", refused.len());

    let output = tocsin(&["check", &wrong]);
    assert_eq!(output.status.code(), Some(1));
    assert!(error(&output).contains("function notify: expected 3 parameters, found 1"), "{}", error(&output));
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", &file("notifier.wasm", Forge::default())])
        .env("TOCSIN_UPLOADS__COMPILE_THREADS", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "on two threads: {}", String::from_utf8_lossy(&output.stdout));
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", &bomb])
        .env("TOCSIN_UPLOADS__COMPILE_CPU_SECONDS", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(error(&output).contains("compilation used more than 1 CPU seconds"), "{}", error(&output));
}

/// Not root, the compiler confines itself in a user namespace of its own:
/// `check` run by an unprivileged user compiles, and refuses, as root's
/// does. (The uid switch of a root service is in `tests/confinement.rs`.)
#[test]
fn check_run_by_an_unprivileged_user_compiles_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root, as CI does, to become another user"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("tocsin");
    std::fs::copy(env!("CARGO_BIN_EXE_tocsin"), &binary).unwrap();
    let notifier = dir.path().join("notifier.wasm");
    std::fs::write(&notifier, Forge::default().component()).unwrap();
    let table = dir.path().join("table.wasm");
    std::fs::write(&table, Forge { table_entries: Some(120_000), ..Forge::default() }.component()).unwrap();
    std::fs::set_permissions(&notifier, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&table, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = |path: &Path| {
        Command::new(&binary)
            .arg("check")
            .arg(path)
            .uid(65534)
            .gid(65534)
            .env_remove("HOME")
            .output()
            .unwrap()
    };
    let output = check(&notifier);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let output = check(&table);
    assert_eq!(output.status.code(), Some(1));
    assert!(json_line(&output)["error"].as_str().unwrap().contains("a table of 120000 elements"));
}

#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.toml");
    std::fs::write(&config, "[limits]\nmemroy_bytes = 1\n").unwrap();
    let output =
        tocsin(&["--config", config.to_str().unwrap(), "notify", "--plugin", "log", "--action", "log://"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("memroy_bytes"));
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["notify", "--plugin", "log", "--action", "log://"])
        .env("TOCSIN_LIMITS__NO_SUCH", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "unknown environment keys are refused too");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such"));
}

#[test]
fn notify_without_plugin_uses_the_builtin_for_the_scheme_and_refuses_reserved_ones() {
    let output = tocsin(&["notify", "--action", "log://"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_line(&output)["plugin"], "log");
    let output = tocsin(&["notify", "--action", "trust+http://trust:delete@127.0.0.1/hook"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("reserved"));
}

#[tokio::test]
async fn environment_proxies_are_ignored() {
    let proxy = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let (action, proxy_url) = (hook.url("/alarm"), proxy.url("/"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["notify", "--plugin", "http", "--action", &action, "--allow-host", "127.0.0.1"])
            .envs([("HTTP_PROXY", &proxy_url), ("http_proxy", &proxy_url), ("ALL_PROXY", &proxy_url)])
            .env("NO_PROXY", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(hook.received().len(), 1);
    assert!(proxy.received().is_empty(), "the proxy from the environment was used");
}
