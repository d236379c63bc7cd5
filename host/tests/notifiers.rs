//! The notifier API of `tocsin serve`, with real components built from
//! source, the real RabbitMQ and loopback HTTP sinks: uploads that go
//! live, who may do what, what is refused and why, hot swap, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use serde_json::Value;
use tocsin_core::tenancy::TokenHash;
use tocsin_tests::broker::{TestVhost, eventually};
use tocsin_tests::forge::Forge;
use tocsin_tests::plugins;
use tocsin_tests::postgres::TestDatabase;
use tocsin_tests::service::{Service, cli, test_config};
use tocsin_tests::tls::TestCa;
use tocsin_tests::webhook::{Reply, Webhook};

const TOCSIN: &str = env!("CARGO_BIN_EXE_tocsin");
const OPERATOR: &str = "operator-token";
const ACME: &str = "acme-token";
const GLOBEX: &str = "globex-token";

/// Tenants `acme` and `globex` and an operator token; `acme-chat` may
/// reach the loopback sinks (the operator's grant).
fn tenants_config(vhost: &TestVhost, extra: &str) -> String {
    let hash = |token| TokenHash::of(token).to_hex();
    let config = test_config(&vhost.transport_url(), "test-host", extra);
    let config =
        config.replacen("[api]\n", &format!("[api]\noperator_token_sha256 = \"{}\"\n", hash(OPERATOR)), 1);
    format!(
        "{config}\n[tenants.acme]\ntoken_sha256 = \"{}\"\n\n[tenants.globex]\ntoken_sha256 = \"{}\"\n\n\
         [tenants.acme.plugins.acme-chat]\nallow_hosts = [\"127.0.0.1\"]\n",
        hash(ACME),
        hash(GLOBEX)
    )
}

fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

async fn upload(service: &Service, scheme: &str, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    service.call("PUT", &format!("/v1/notifiers/{scheme}"), Some(token), bytes).await
}

async fn publish(vhost: &TestVhost, action: &str, count: u32) {
    let count = count.to_string();
    cli(TOCSIN, &vhost.transport_url(), &["publish", "--action", action, "--count", &count], &[]).await;
}

#[tokio::test]
async fn an_uploaded_notifier_is_live_at_once_and_serves_its_scheme() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;

    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["version"]["version"], 1);
    assert_eq!(answer["notifier"]["tenant"], "acme");
    assert_eq!(answer["notifier"]["live"], serde_json::json!({"state": "live", "version": 1}));
    assert_eq!(answer["host"], "test-host");
    let imports = answer["version"]["imports"].as_array().unwrap();
    assert!(imports.iter().any(|i| i == "tocsin:notifier/http@0.1.0"), "{imports:?}");

    publish(&vhost, &format!("acme-chat://chat.example/room?target={}", sink.url("/room")), 1).await;
    let delivered = eventually(Duration::from_secs(20), async || sink.received().len() == 1).await;
    assert!(delivered, "{}", service.log_text());
    assert_eq!(sink.received()[0].target, "/room");

    let (status, logs) = service.call("GET", "/v1/notifiers/acme-chat/logs", Some(ACME), vec![]).await;
    assert_eq!(status, 200);
    let lines = logs["lines"].as_array().unwrap();
    assert!(lines.iter().any(|line| line["message"] == "fetch: status=200 bytes=0"), "{logs}");
}

/// Every endpoint × {no token, wrong token, other tenant, owner, operator}.
#[tokio::test]
async fn every_endpoint_answers_each_caller_as_its_rights_say() {
    let vhost = TestVhost::create();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;
    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!(status, 201, "{answer}");

    let counter = component(plugins::COUNTER);
    let activate = br#"{"version": 1}"#.to_vec();
    // (method, path, body, expected for: none, wrong, other tenant, owner, operator)
    let matrix: Vec<(&str, &str, Vec<u8>, [u16; 5])> = vec![
        ("GET", "/v1/notifiers", vec![], [401, 401, 200, 200, 200]),
        ("GET", "/v1/notifiers/acme-chat", vec![], [401, 401, 404, 200, 200]),
        ("GET", "/v1/notifiers/acme-chat/logs", vec![], [401, 401, 404, 200, 200]),
        ("POST", "/v1/notifiers/acme-chat/activate", activate, [401, 401, 404, 200, 200]),
        ("POST", "/v1/notifiers/acme-chat/dry-run", vec![], [401, 401, 404, 200, 200]),
        (
            "PUT",
            "/v1/notifiers/acme-chat/secrets/key?url=https://h.example/",
            b"v".to_vec(),
            [401, 401, 404, 204, 204],
        ),
        ("GET", "/v1/notifiers/acme-chat/secrets", vec![], [401, 401, 404, 200, 200]),
        ("DELETE", "/v1/notifiers/acme-chat/secrets/key", vec![], [401, 401, 404, 204, 404]),
        ("PUT", "/v1/notifiers/acme-chat", counter, [401, 401, 409, 201, 201]),
        ("DELETE", "/v1/notifiers/acme-chat", vec![], [401, 401, 404, 204, 404]),
    ];
    let callers = [None, Some("wrong-token"), Some(GLOBEX), Some(ACME), Some(OPERATOR)];
    for (method, path, body, expected) in matrix {
        for (caller, want) in callers.iter().zip(expected) {
            let (status, answer) = service.call(method, path, *caller, body.clone()).await;
            assert_eq!(status, want, "{method} {path} as {caller:?}: {answer}");
            if status >= 400 {
                assert!(answer["error"]["code"].is_string(), "{method} {path}: {answer}");
                assert!(answer["error"]["message"].is_string(), "{method} {path}: {answer}");
            }
        }
    }

    // What each one sees in the list.
    upload(&service, "globex-pager", GLOBEX, component(plugins::COUNTER)).await;
    upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    let schemes = async |token| {
        let (_, list) = service.call("GET", "/v1/notifiers", Some(token), vec![]).await;
        let schemes: Vec<String> = list["notifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["scheme"].as_str().unwrap().to_owned())
            .collect();
        schemes
    };
    assert_eq!(schemes(ACME).await, ["acme-chat"]);
    assert_eq!(schemes(GLOBEX).await, ["globex-pager"]);
    assert_eq!(schemes(OPERATOR).await, ["acme-chat", "globex-pager"]);

    // Claims: reserved, taken and foreign schemes answer alike.
    let unavailable =
        [("http", ACME), ("trust+heat", ACME), ("globex-pager", ACME), ("pager", ACME), ("log", OPERATOR)];
    let mut messages = Vec::new();
    for (scheme, token) in unavailable {
        let (status, answer) = upload(&service, scheme, token, component(plugins::COUNTER)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("scheme_unavailable")), "{scheme}");
        messages.push(answer["error"]["message"].as_str().unwrap().replace(scheme, "<scheme>"));
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one answer whatever the reason: {messages:?}");
    let (status, answer) = upload(&service, "Acme_Chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_scheme")), "{answer}");
    // The operator's unprefixed scheme is the operator's.
    let (status, answer) = upload(&service, "pager", OPERATOR, component(plugins::COUNTER)).await;
    assert_eq!((status, &answer["notifier"]["tenant"]), (201, &Value::Null), "{answer}");
}

/// Refused uploads say why, and leave the service and the other
/// notifiers as they were.
#[tokio::test]
async fn hostile_uploads_are_refused_with_the_reason() {
    let vhost = TestVhost::create();
    let extra =
        "[uploads]\nmax_component_bytes = 8388608\ncompile_memory_bytes = 268435456\nupload_burst = 20\n";
    let service = Service::start(TOCSIN, &tenants_config(&vhost, extra)).await;
    let (status, _) = upload(&service, "acme-ok", ACME, component(plugins::COUNTER)).await;
    assert_eq!(status, 201);

    let core_module = wasm_encoder::Module::new().finish();
    let no_export = wasm_encoder::Component::new().finish();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("not wasm", b"#!/bin/sh\nrm -rf /\n".to_vec(), 422, "not_a_component", "no wasm header"),
        ("a core module", core_module, 422, "not_a_component", "wasm32-wasip2"),
        ("sockets", component(plugins::SOCKETS), 422, "forbidden_import", "wasi:sockets/"),
        ("wasi:http", component(plugins::WASI_HTTP), 422, "forbidden_import", "wasi:http/"),
        ("no notifier export", no_export, 422, "missing_export", "tocsin:notifier/handler@0.1.0"),
        ("9 MiB", vec![0; 9 << 20], 413, "", "at most 8388608"),
        (
            "a compile bomb",
            Forge { bomb_functions: 1, bomb_repeats: 300_000, ..Forge::default() }.component(),
            422,
            "compile_limit",
            "more than 268435456 bytes of memory",
        ),
    ];
    for (what, bytes, want_status, want_reason, want_message) in cases {
        let (status, answer) = upload(&service, "acme-hostile", ACME, bytes).await;
        assert_eq!(status, want_status, "{what}: {answer}");
        let error = &answer["error"];
        if !want_reason.is_empty() {
            assert_eq!(
                (error["code"].as_str(), error["reason"].as_str()),
                (Some("component_refused"), Some(want_reason)),
                "{what}: {answer}"
            );
        }
        assert!(error["message"].as_str().unwrap().contains(want_message), "{what}: {answer}");
    }
    let (status, _) = service.call("GET", "/v1/notifiers/acme-hostile", Some(ACME), vec![]).await;
    assert_eq!(status, 404, "nothing refused was stored");
    assert_eq!(service.get("/healthz").await.0, 200);
    let (status, _) = upload(&service, "acme-ok", ACME, component(plugins::COUNTER)).await;
    assert_eq!(status, 201, "uploads still work");
}

/// Issue 22: what could never run is refused, with what to change, by the
/// compiler child's checks before it compiles (export type, initial
/// memory, tables), and a compile bomb by its CPU limit on one thread. At
/// e8aba4b the first three were accepted: the wrong signature went live
/// and failed every call at instantiation, the 64 MiB memory went live
/// and failed every call at its memory limit, the 120k table compiled and
/// was refused at load as `artifact`; the bomb compiled on every core.
#[tokio::test]
async fn uploads_that_could_never_run_are_refused_with_what_to_change() {
    let vhost = TestVhost::create();
    let extra = "[uploads]\ncompile_cpu_seconds = 1\nupload_burst = 10\n[uploads.max_limits]\nmemory_bytes = 67108864\n";
    let service = Service::start(TOCSIN, &tenants_config(&vhost, extra)).await;
    let confined = service.lines_with("registry: The compiler of tenants' components is confined: its own namespaces, no capabilities, a seccomp filter.");
    assert_eq!(confined.len(), 1, "{}", service.log_text());

    let cases = [
        (
            "a wrong-signature export",
            Forge { wrong_signature: true, ..Forge::default() },
            "export_mismatch",
            "tocsin:notifier/handler@0.1.0: function notify: expected 3 parameters, found 1",
        ),
        (
            "a 64 MiB initial memory",
            Forge { memory_pages: 1024, ..Forge::default() },
            "too_large",
            "start at 67108864 bytes, above the call's memory limit of 33554432 bytes (limit memory_bytes)",
        ),
        (
            "a 120k-entry table",
            Forge { table_entries: Some(120_000), ..Forge::default() },
            "too_large",
            "a table of 120000 elements; a table may have at most 20000",
        ),
        (
            "a 100k-function compile bomb",
            Forge { bomb_functions: 100_000, bomb_repeats: 2, ..Forge::default() },
            "compile_limit",
            "compilation used more than 1 CPU seconds (uploads.compile_cpu_seconds)",
        ),
    ];
    for (what, forge, reason, message) in cases {
        let (status, answer) = upload(&service, "acme-forged", ACME, forge.component()).await;
        let error = &answer["error"];
        assert_eq!((status, error["reason"].as_str()), (422, Some(reason)), "{what}: {answer}");
        assert!(error["message"].as_str().unwrap().contains(message), "{what}: {answer}");
    }
    let refused = service.lines_with("registry: Refused an upload.");
    assert_eq!(refused.len(), 4, "{}", service.log_text());
    assert!(
        refused.iter().all(|line| line["tenant"] == "acme" && line["outcome"] == "refused"),
        "{refused:?}"
    );
    // The first three never reached Cranelift.
    let compiler = service.lines_with("registry: The compiler refused a component.");
    let compiled: Vec<_> =
        compiler.iter().map(|line| (line["reason"].clone(), line["compiled"].clone())).collect();
    assert_eq!(
        compiled,
        [
            ("export_mismatch".into(), false.into()),
            ("too_large".into(), false.into()),
            ("too_large".into(), false.into()),
            ("compile_limit".into(), true.into()),
        ],
        "{}",
        service.log_text()
    );

    // A version's memory limit holds for a cached artifact too: compiled for
    // a version allowed 64 MiB, the same bytes are refused for one allowed
    // the default 32.
    let forty = Forge { memory_pages: 640, ..Forge::default() }.component();
    let (status, answer) =
        service.call("PUT", "/v1/notifiers/acme-big?memory_bytes=67108864", Some(ACME), forty.clone()).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = upload(&service, "acme-small", ACME, forty).await;
    assert_eq!((status, answer["error"]["reason"].as_str()), (422, Some("too_large")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("start at 41943040 bytes"), "{answer}");

    // The same forge, within the limits, is a notifier that delivers.
    let (status, answer) = upload(&service, "acme-forged", ACME, Forge::default().component()).await;
    assert_eq!(status, 201, "{answer}");
    publish(&vhost, "acme-forged://", 1).await;
    let delivered = r#"tocsin_deliveries_total{plugin="acme-forged",tenant="acme",outcome="delivered"}"#;
    let counted = eventually(Duration::from_secs(10), async || {
        service.metric_as(Some(OPERATOR), delivered).await == 1.0
    })
    .await;
    assert!(counted, "{}", service.log_text());
}

/// A storm of uploads from one tenant is answered 429 at once (its rate,
/// its share of the compile queue), while another tenant's upload waits
/// its turn and goes live.
#[tokio::test]
async fn an_upload_storm_from_one_tenant_is_answered_429_and_another_tenants_upload_still_succeeds() {
    let vhost = TestVhost::create();
    let extra = "[uploads]\nupload_burst = 4\nuploads_per_minute = 1\ncompile_queue = 3\n\
                 tenant_compile_queue = 2\ncompiles_at_once = 2\ncompile_cpu_seconds = 3\n";
    let service = Service::start(TOCSIN, &tenants_config(&vhost, extra)).await;
    let bomb =
        |n: u32| Forge { bomb_functions: 100_000 + n, bomb_repeats: 2, ..Forge::default() }.component();

    // Two compile bombs of acme's take both compilers (and acme's share of
    // the queue) for 3 CPU seconds each, while the storm comes.
    let answered = std::sync::atomic::AtomicBool::new(false);
    let bombs = async {
        let both = tokio::join!(
            upload(&service, "acme-bomb", ACME, bomb(1)),
            upload(&service, "acme-bomb", ACME, bomb(2))
        );
        answered.store(true, std::sync::atomic::Ordering::SeqCst);
        both
    };
    let storm = async {
        let compiling = eventually(Duration::from_secs(30), async || {
            service.lines_with("registry: Started the compiler.").len() == 2
        })
        .await;
        assert!(compiling, "both bombs: {}", service.log_text());
        let mut storm = Vec::new();
        for n in 3..7 {
            storm.push(upload(&service, "acme-bomb", ACME, bomb(n)).await);
        }
        assert!(!answered.load(std::sync::atomic::Ordering::SeqCst), "the bombs were compiling all along");
        // globex's upload takes the last place in the queue and waits for
        // a compiler.
        (storm, upload(&service, "globex-pager", GLOBEX, component(plugins::COUNTER)).await)
    };
    let (bombs, (storm, globex)) = tokio::join!(bombs, storm);

    let codes: Vec<_> =
        storm.iter().map(|(status, answer)| (*status, answer["error"]["code"].clone())).collect();
    assert_eq!(
        codes,
        [
            (429, "busy".into()),
            (429, "busy".into()),
            (429, "rate_limited".into()),
            (429, "rate_limited".into())
        ],
        "acme's share of the queue is full, then its rate: {storm:?}"
    );
    assert!(
        storm[0].1["error"]["message"].as_str().unwrap().contains("uploads.tenant_compile_queue"),
        "{storm:?}"
    );
    assert!(storm[2].1["error"]["retry_after_ms"].as_u64().unwrap() > 0, "{storm:?}");
    assert_eq!(globex.0, 201, "{}", globex.1);
    for (status, answer) in [bombs.0, bombs.1] {
        assert_eq!((status, answer["error"]["reason"].as_str()), (422, Some("compile_limit")), "{answer}");
    }
}

/// Where the compiler cannot be confined, no tenant's component is
/// compiled: the service says so at start and answers uploads 503, until
/// the operator opts out (`uploads.confine_compiler = false`), which it
/// says at start too. Here tocsin runs as root of a user namespace of its
/// own (`unshare --user --map-root-user`), where the compiler's
/// unprivileged user does not exist.
#[tokio::test]
async fn a_compiler_that_cannot_be_confined_compiles_nothing_unless_the_operator_opts_out() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("tocsin-in-a-user-namespace");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec unshare --user --map-root-user {TOCSIN} \"$@\"\n"))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper = wrapper.to_str().unwrap();
    let vhost = TestVhost::create();

    let service = Service::start(wrapper, &tenants_config(&vhost, "")).await;
    let refused = service.lines_with(
        "registry: The compiler cannot be confined; no tenant's component will be compiled until it can.",
    );
    assert_eq!(refused.len(), 1, "{}", service.log_text());
    assert_eq!(refused[0]["level"], "ERROR");
    assert!(refused[0]["error"].as_str().unwrap().contains("cannot drop to uid 65534"), "{refused:?}");
    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (503, Some("compiler_unavailable")), "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("uploads.confine_compiler = false"),
        "{answer}"
    );
    drop(service);

    let service =
        Service::start(wrapper, &tenants_config(&vhost, "[uploads]\nconfine_compiler = false\n")).await;
    let warned = service.lines_with(
        "registry: The compiler of tenants' components runs unconfined (uploads.confine_compiler = false).",
    );
    assert_eq!(warned.len(), 1, "{}", service.log_text());
    assert_eq!(warned[0]["level"], "WARN");
    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!(status, 201, "{answer}");
}

/// The compiler's CPU and wall-clock limits, on the child process alone.
#[tokio::test]
async fn the_compiler_process_is_stopped_at_its_cpu_and_time_limits() {
    use tocsin::sandbox::compiler::confine::{Confinement, Identity};
    use tocsin::sandbox::compiler::{CompileLimits, CompileTarget, Compiler};
    use tocsin::sandbox::validate::LoadError;
    let bomb = Forge { bomb_functions: 4, bomb_repeats: 300_000, ..Forge::default() }.component();
    let compiler = |cpu_seconds, timeout_ms| {
        let limits = CompileLimits {
            cpu_seconds,
            memory_bytes: 8 << 30,
            timeout: Duration::from_millis(timeout_ms),
            threads: 1,
            max_artifact_bytes: 64 << 20,
            at_once: 1,
        };
        let target = CompileTarget { max_wasm_stack_bytes: 512 << 10 };
        let confinement = Confinement::Required(Identity { uid: 65534, gid: 65534 });
        Compiler::new(TOCSIN.into(), limits, target, confinement, None)
    };
    let sha = "0".repeat(64);
    let error = compiler(1, 120_000).artifact(&sha, &bomb, 32 << 20).await.unwrap_err();
    assert_eq!(
        error,
        LoadError::CompileLimit(
            "compilation used more than 1 CPU seconds (uploads.compile_cpu_seconds)".into()
        )
    );
    let error = compiler(60, 200).artifact(&sha, &bomb, 32 << 20).await.unwrap_err();
    assert_eq!(
        error,
        LoadError::CompileLimit(
            "compilation took longer than 200 ms and was stopped (uploads.compile_timeout_ms)".into()
        )
    );
}

/// A restart reloads every notifier, from the artifact cache when the
/// cached file carries tocsin's MAC; a stored entry that no longer matches
/// what was uploaded disables that notifier alone, with the reason.
#[tokio::test]
async fn a_restart_reloads_everything_and_a_corrupt_entry_disables_only_its_notifier() {
    let vhost = TestVhost::create();
    let state = tempfile::tempdir().unwrap();
    let extra = format!("[uploads]\nstate_path = \"{}\"\n", state.path().display());
    let config = tenants_config(&vhost, &extra);
    let mut first = Service::start(TOCSIN, &config).await;
    for scheme in ["acme-counter", "acme-broken"] {
        assert_eq!(upload(&first, scheme, ACME, component(plugins::COUNTER)).await.0, 201);
    }
    assert_eq!(upload(&first, "acme-fetch", ACME, component(plugins::FETCH)).await.0, 201);
    assert_eq!(first.lines_with("registry: Compiled a component.").len(), 2, "one compilation per content");
    first.terminate(Duration::from_secs(20)).await.unwrap();

    // Corrupt one stored version, and tamper with one cached artifact.
    let url = format!("sqlite://{}", state.path().join("tocsin.sqlite").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE notifier_versions SET component = x'0061736d' WHERE scheme = 'acme-broken'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let fetch_sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(component(plugins::FETCH)));
    let cached = std::fs::read_dir(state.path().join("artifacts"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.file_name().unwrap().to_str().unwrap().starts_with(&fetch_sha))
        .unwrap();
    let mut bytes = std::fs::read(&cached).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached, bytes).unwrap();

    let second = Service::start(TOCSIN, &config).await;
    let loaded = second.lines_with("registry: Loaded the uploaded notifiers.");
    assert_eq!((&loaded[0]["live"], &loaded[0]["disabled"]), (&2.into(), &1.into()), "{}", second.log_text());
    let disabled = second.lines_with(
        "registry: Cannot load a stored notifier; it is disabled until a version that loads is activated.",
    );
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["plugin"], "acme-broken");
    assert!(disabled[0]["error"].as_str().unwrap().contains("do not match its sha256"), "{disabled:?}");
    assert_eq!(second.lines_with("registry: A cached artifact fails its MAC; compiling again.").len(), 1);
    let compiled = second.lines_with("registry: Compiled a component.");
    assert_eq!(compiled.len(), 1, "only the tampered artifact is compiled again: {compiled:?}");
    assert_eq!(compiled[0]["sha256"], fetch_sha.as_str());

    let (_, broken) = second.call("GET", "/v1/notifiers/acme-broken", Some(ACME), vec![]).await;
    assert_eq!(broken["notifier"]["live"]["state"], "disabled", "{broken}");
    assert!(broken["notifier"]["live"]["error"].as_str().unwrap().contains("sha256"), "{broken}");
    let (_, counter) = second.call("GET", "/v1/notifiers/acme-counter", Some(ACME), vec![]).await;
    assert_eq!(counter["notifier"]["live"], serde_json::json!({"state": "live", "version": 1}));

    // The working notifiers deliver.
    publish(&vhost, "acme-counter://x/", 1).await;
    let counted = eventually(Duration::from_secs(20), async || {
        let (_, logs) = second.call("GET", "/v1/notifiers/acme-counter/logs", Some(ACME), vec![]).await;
        logs["lines"].as_array().is_some_and(|lines| lines.iter().any(|l| l["message"] == "calls=1"))
    })
    .await;
    assert!(counted, "{}", second.log_text());
}

/// Version 2 goes live while deliveries run: calls in flight finish on
/// version 1, later ones run version 2, and none fails.
#[tokio::test]
async fn a_new_version_goes_live_under_load_without_a_failed_delivery() {
    const ALARMS: u32 = 1000;
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::Delayed(Duration::from_millis(20), Box::new(Reply::status(200))))
        .await
        .unwrap();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);

    publish(&vhost, &format!("acme-chat://chat.example/room?target={}", sink.url("/room")), ALARMS).await;
    let started = eventually(Duration::from_secs(30), async || sink.received().len() >= 100).await;
    assert!(started, "{}", service.log_text());
    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!((status, &answer["version"]["version"]), (201, &2.into()), "{answer}");

    let delivered = r#"tocsin_deliveries_total{plugin="acme-chat",tenant="acme",outcome="delivered"}"#;
    let all = eventually(Duration::from_secs(60), async || {
        service.metric_as(Some(OPERATOR), delivered).await == f64::from(ALARMS)
    })
    .await;
    assert!(all, "delivered {} of {ALARMS}", service.metric_as(Some(OPERATOR), delivered).await);
    for outcome in ["retryable", "failed", "dead_lettered"] {
        let sample =
            format!(r#"tocsin_deliveries_total{{plugin="acme-chat",tenant="acme",outcome="{outcome}"}}"#);
        assert_eq!(service.metric_as(Some(OPERATOR), &sample).await, 0.0, "{outcome}");
    }
    let by_v1 = sink.received().len();
    let by_v2 = service.logs().iter().filter(|line| line["message"] == "calls=1").count();
    println!("{ALARMS} alarms: {by_v1} delivered by version 1, {by_v2} by version 2, none failed");
    assert!(by_v1 >= 100 && by_v2 > 0, "v1 {by_v1}, v2 {by_v2}");
    assert_eq!(by_v1 + by_v2, ALARMS as usize, "each alarm delivered once, by one version");
    assert_eq!(vhost.depth("tocsin.dead-letters").await, 0);
}

/// Runs `tocsin plugin args…` against `service` with `token`: exit code,
/// stdout as JSON (null when empty), stderr.
async fn plugin_cli(service: &Service, token: &str, args: &[&str]) -> (i32, Value, String) {
    plugin_cli_with_input(service, token, args, b"").await
}

/// [`plugin_cli`] with `input` on stdin.
async fn plugin_cli_with_input(
    service: &Service,
    token: &str,
    args: &[&str],
    input: &[u8],
) -> (i32, Value, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(TOCSIN)
        .arg("plugin")
        .args(args)
        .env("TOCSIN_API", &service.api)
        .env("TOCSIN_TOKEN", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let stdout = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `tocsin plugin` upload, list, show, dry-run, logs, activate, secret and
/// rm, as a tenant would use them; refusals exit 1 with the API's message.
#[tokio::test]
async fn the_plugin_cli_drives_the_api() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(204)).await.unwrap();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;

    let (code, answer, stderr) =
        plugin_cli(&service, ACME, &["upload", "acme-chat", plugins::COUNTER, "--limit", "fuel=50000000"])
            .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(answer["version"]["limits"]["fuel"], 50_000_000);
    let (code, _, stderr) =
        plugin_cli(&service, ACME, &["upload", "acme-chat", plugins::FETCH, "--allow-host", "hooks.example"])
            .await;
    assert_eq!(code, 0, "{stderr}");

    let (_, list, _) = plugin_cli(&service, ACME, &["list"]).await;
    assert_eq!(list["notifiers"][0]["active_version"], 2);
    let (_, shown, _) = plugin_cli(&service, ACME, &["show", "acme-chat"]).await;
    assert_eq!(shown["notifier"]["versions"][1]["allow_hosts"], serde_json::json!(["hooks.example"]));

    let action = format!("acme-chat://x/?target={}", sink.url("/dry"));
    let (code, ran, stderr) =
        plugin_cli(&service, ACME, &["dry-run", "acme-chat", "--action", &action]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ran["report"]["outcome"], "delivered", "{ran}");
    assert_eq!(ran["report"]["logs"][0]["message"], "fetch: status=204 bytes=0", "{ran}");
    assert_eq!(sink.received().len(), 1);
    let (_, logs, _) = plugin_cli(&service, ACME, &["logs", "acme-chat"]).await;
    assert_eq!(
        (&logs["host"], &logs["lines"][0]["message"]),
        (&"test-host".into(), &"fetch: status=204 bytes=0".into())
    );

    let (code, activated, stderr) = plugin_cli(&service, ACME, &["activate", "acme-chat", "1"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(activated["notifier"]["live"]["version"], 1);
    let (_, ran, _) = plugin_cli(&service, ACME, &["dry-run", "acme-chat"]).await;
    assert_eq!(ran["report"]["logs"][0]["message"], "calls=1", "version 1 runs again: {ran}");
    // An alarm as Python's `json` writes it runs; one that is not an alarm is refused.
    let alarm = r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "reason_data": {"v": NaN}}"#;
    let body = format!(r#"{{"action": "acme-chat://x/", "alarm": {alarm}}}"#).into_bytes();
    let (status, ran) = service.call("POST", "/v1/notifiers/acme-chat/dry-run", Some(ACME), body).await;
    assert_eq!((status, &ran["report"]["outcome"]), (200, &"delivered".into()), "{ran}");
    let body = br#"{"alarm": {"alarm_id": 5}}"#.to_vec();
    let (status, refused) = service.call("POST", "/v1/notifiers/acme-chat/dry-run", Some(ACME), body).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("alarm: invalid type: integer `5`"), "{refused}");
    for body in
        [b"[\"acme-chat://x/\"]".to_vec(), format!("{{\"action\": \"{}\"}}", "x".repeat(70_000)).into_bytes()]
    {
        let (status, refused) =
            service.call("POST", "/v1/notifiers/acme-chat/dry-run", Some(ACME), body).await;
        assert_eq!(status, 400, "{refused}");
    }

    let (code, _, stderr) = plugin_cli_with_input(
        &service,
        ACME,
        &["secret", "set", "acme-chat", "api_key", "--url", "https://h.example/"],
        b"v4lue\n",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let (_, secrets, _) = plugin_cli(&service, ACME, &["secret", "list", "acme-chat"]).await;
    assert_eq!(secrets["secrets"][0]["name"], "api_key");
    assert!(!secrets.to_string().contains("v4lue"));
    let (code, _, stderr) = plugin_cli(&service, ACME, &["secret", "rm", "acme-chat", "api_key"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = plugin_cli(&service, ACME, &["secret", "rm", "acme-chat", "api_key"]).await;
    assert_eq!(
        (code, stderr.trim()),
        (1, "tocsin: 404 Not Found no_such_secret: notifier acme-chat has no secret api_key")
    );

    let (code, _, stderr) = plugin_cli(&service, GLOBEX, &["rm", "acme-chat"]).await;
    assert_eq!((code, stderr.trim()), (1, "tocsin: 404 Not Found not_found: no notifier acme-chat"));
    let (code, _, stderr) = plugin_cli(&service, "wrong", &["list"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("401 Unauthorized unauthenticated"), "{stderr}");
    let (code, _, stderr) = plugin_cli(&service, ACME, &["rm", "acme-chat"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (_, list, _) = plugin_cli(&service, ACME, &["list"]).await;
    assert_eq!(list["notifiers"], serde_json::json!([]));
}

/// Two hosts sharing one PostgreSQL: what is uploaded to one goes live on
/// the other through the change feed, and is delivered there; a deletion
/// follows the same way.
#[tokio::test]
async fn two_hosts_sharing_postgresql_see_an_upload_live_within_a_second() {
    let vhost = TestVhost::create();
    let database = TestDatabase::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let key = tempfile::tempdir().unwrap();
    let shared = format!(
        "[database]\nconnection = \"{}\"\n\n[uploads]\nsecrets_key_file = \"{}\"\n",
        database.url(),
        key.path().join("secrets.key").display()
    );
    // Host a takes uploads only; host b consumes the alarms.
    let api_only = "[intake.rpc]\nenabled = false\n\n[intake.notification]\nenabled = false\n";
    let config_a = tenants_config(&vhost, &format!("{shared}{api_only}")).replace("test-host", "host-a");
    let config_b = tenants_config(&vhost, &shared).replace("test-host", "host-b");
    let a = Service::start(TOCSIN, &config_a).await;
    let b = Service::start(TOCSIN, &config_b).await;

    let bytes = component(plugins::FETCH);
    assert!(bytes.len() <= 1 << 20, "a component of at most 1 MiB: {}", bytes.len());
    let (status, answer) = upload(&a, "acme-chat", ACME, bytes).await;
    assert_eq!(status, 201, "{answer}");
    let answered = std::time::Instant::now();
    let live_on_b = eventually(Duration::from_secs(10), async || {
        let (_, shown) = b.call("GET", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await;
        shown["notifier"]["live"]["state"] == "live"
    })
    .await;
    let elapsed = answered.elapsed();
    assert!(live_on_b, "{}", b.log_text());
    println!("live on host b {} ms after host a answered the upload", elapsed.as_millis());
    assert_eq!(
        b.lines_with("registry: Applied a notifier change made on another host.")[0]["from"],
        "host-a"
    );

    publish(&vhost, &format!("acme-chat://chat.example/room?target={}", sink.url("/from-b")), 1).await;
    let delivered = eventually(Duration::from_secs(20), async || sink.received().len() == 1).await;
    assert!(delivered, "{}", b.log_text());
    let (_, logs) = b.call("GET", "/v1/notifiers/acme-chat/logs", Some(ACME), vec![]).await;
    assert_eq!(
        (&logs["host"], logs["lines"].as_array().map(Vec::len)),
        (&"host-b".into(), Some(1)),
        "{logs}"
    );

    // A secret set on a is used on b (the hosts share the secrets key).
    let path = format!("/v1/notifiers/acme-chat/secrets/token?url={}", sink.url("/"));
    let put = a.call("PUT", &path, Some(ACME), b"t0ken".to_vec()).await;
    assert_eq!(put.0, 204);
    let action =
        format!("acme-chat://x/?target={}&header=x-token&value=%7B%7Bsecret:token%7D%7D", sink.url("/s"));
    let body = serde_json::json!({ "action": action }).to_string().into_bytes();
    let used = eventually(Duration::from_secs(10), async || {
        b.call("POST", "/v1/notifiers/acme-chat/dry-run", Some(ACME), body.clone()).await.1["report"]["outcome"]
            == "delivered"
    })
    .await;
    assert!(used, "{}", b.log_text());
    assert_eq!(sink.received().last().unwrap().header("x-token"), Some("t0ken"));

    assert_eq!(a.call("DELETE", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await.0, 204);
    let gone = eventually(Duration::from_secs(10), async || {
        b.call("POST", "/v1/notifiers/acme-chat/dry-run", Some(ACME), vec![]).await.0 == 404
    })
    .await;
    assert!(gone, "{}", b.log_text());
}

/// A tenant's quotas (notifiers, bytes, concurrent deliveries) and the
/// per-notifier metrics: outcomes, limit hits, dropped log lines.
#[tokio::test]
async fn tenant_quotas_hold_and_each_notifier_is_measured() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::Delayed(Duration::from_millis(300), Box::new(Reply::status(200))))
        .await
        .unwrap();
    let (flood, fetch) = (component(plugins::LOG_FLOOD), component(plugins::FETCH));
    let quotas = format!(
        "max_notifiers = 2\nmax_total_bytes = {}\nmax_concurrent_deliveries = 1\n\n[tenants.globex]",
        flood.len() + fetch.len() + 1024
    );
    let config = tenants_config(&vhost, "")
        .replace("[tenants.globex]", &quotas)
        .replace("[dispatch]\n", "[dispatch]\nslot_wait_ms = 50\n");
    let service = Service::start(TOCSIN, &config).await;

    assert_eq!(upload(&service, "acme-flood", ACME, flood).await.0, 201);
    assert_eq!(upload(&service, "acme-chat", ACME, fetch.clone()).await.0, 201);
    let (status, answer) = upload(&service, "acme-third", ACME, component(plugins::COUNTER)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("quota_exceeded")), "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("has 2 notifiers, its quota is 2"),
        "{answer}"
    );
    let (status, answer) = upload(&service, "acme-chat", ACME, fetch).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("quota_exceeded")),
        "a second version: {answer}"
    );

    // One delivery of acme's at a time: the others wait, are deferred to a
    // retry tier, and are delivered. (Four actions: retries of one alarm's
    // older state changes to the same action would be superseded.)
    for n in 0..4 {
        publish(&vhost, &format!("acme-chat://x/?target={}", sink.url(&format!("/slow{n}"))), 1).await;
    }
    let all = eventually(Duration::from_secs(30), async || sink.received().len() == 4).await;
    assert!(all, "{}", service.log_text());
    let deferred = service
        .lines_with("dispatch: No slot came free in time; the delivery waits in the first retry tier.");
    assert!(!deferred.is_empty());
    assert_eq!(deferred[0]["reason"], "tenant acme is at its concurrent-delivery quota");
    let metric = |name: &str, labels: &str| format!("tocsin_{name}{{plugin=\"{labels}");
    let delivered = metric("deliveries_total", r#"acme-chat",tenant="acme",outcome="delivered"}"#);
    let counted = eventually(Duration::from_secs(10), async || {
        service.metric_as(Some(OPERATOR), &delivered).await == 4.0
    })
    .await;
    assert!(counted, "{}", service.get_as(Some(OPERATOR), "/metrics").await.1);

    publish(&vhost, "acme-flood://x/?lines=300", 1).await;
    let log_hit = metric("limit_hits_total", r#"acme-flood",tenant="acme",limit="log"}"#);
    let hit = eventually(Duration::from_secs(30), async || {
        service.metric_as(Some(OPERATOR), &log_hit).await == 1.0
    })
    .await;
    assert!(hit, "{}", service.get_as(Some(OPERATOR), "/metrics").await.1);
    let dropped = service
        .metric_as(Some(OPERATOR), &metric("log_lines_dropped_total", r#"acme-flood",tenant="acme"}"#))
        .await;
    assert_eq!(dropped, 240.0, "all but the 60 lines (1 KiB and the identity fields) that fit in 64 KiB");
    let (_, shown) = service.call("GET", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await;
    assert_eq!(shown["deliveries"]["delivered"], 4, "{shown}");
    assert!(shown["deliveries"]["deferred"].as_u64().unwrap() >= 1, "{shown}");
}

/// Secrets by handle: filled into header placeholders for granted hosts
/// only, never shown in logs, metrics or answers, encrypted at rest.
#[tokio::test]
async fn a_stored_secret_fills_placeholders_for_granted_hosts_only_and_is_never_shown() {
    const SECRET: &str = "k3y-s3cr3t-value-7781";
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let extra = format!("[uploads]\nstate_path = \"{}\"\n", state.path().display());
    let service = Service::start_logging(TOCSIN, &tenants_config(&vhost, &extra), "info,tocsin=trace").await;
    for scheme in ["acme-chat", "acme-pager"] {
        assert_eq!(upload(&service, scheme, ACME, component(plugins::FETCH)).await.0, 201);
        let path = format!("/v1/notifiers/{scheme}/secrets/pager_key?url={}", sink.url("/hook"));
        assert_eq!(service.call("PUT", &path, Some(ACME), format!("{SECRET}\n").into_bytes()).await.0, 204);
    }
    let placeholder = "value=Token%20%7B%7Bsecret:pager_key%7D%7D&header=x-api-key";
    let dry_run = async |scheme: &str, action: String| {
        let body = serde_json::json!({ "action": action }).to_string().into_bytes();
        service.call("POST", &format!("/v1/notifiers/{scheme}/dry-run"), Some(ACME), body).await.1
    };

    // acme-chat has 127.0.0.1 granted by the operator, and /hook is under
    // the secret's prefix: filled in.
    let ran =
        dry_run("acme-chat", format!("acme-chat://x/?target={}&{placeholder}", sink.url("/hook"))).await;
    assert_eq!(ran["report"]["outcome"], "delivered", "{ran}");
    assert_eq!(sink.received()[0].header("x-api-key"), Some(format!("Token {SECRET}").as_str()));
    // acme-pager has no grant: the action URL's host, chosen by whoever
    // wrote the alarm, never gets the secret.
    let action = format!("acme-pager://{}/?target={}&{placeholder}", sink.addr, sink.url("/hook"));
    let ran = dry_run("acme-pager", action).await;
    assert_eq!(ran["report"]["outcome"], "failed", "{ran}");
    let logs = ran["report"]["logs"].to_string();
    assert!(logs.contains("secret placeholders are filled in only for hosts granted"), "{ran}");
    // Another path on the granted host, or a secret that is not stored:
    // one refusal for both, nothing sent.
    let elsewhere = format!("acme-chat://x/?target={}&{placeholder}", sink.url("/other"));
    let unknown =
        format!("acme-chat://x/?target={}&value=%7B%7Bsecret:nope%7D%7D&header=x-a", sink.url("/hook"));
    for (action, name) in [(elsewhere, "pager_key"), (unknown, "nope")] {
        let ran = dry_run("acme-chat", action).await;
        let refusal = format!(r#"secret \\\"{name}\\\" is not available for this URL"#);
        assert!(ran["report"]["logs"].to_string().contains(&refusal), "{ran}");
    }
    // A header-expansion bomb: placeholders of an 8 KiB secret, five in one
    // value. Refused before any is filled in; nothing is sent.
    let path = format!("/v1/notifiers/acme-chat/secrets/zz-bomb?url={}", sink.url("/hook"));
    assert_eq!(service.call("PUT", &path, Some(ACME), "x".repeat(8 << 10).into_bytes()).await.0, 204);
    let bomb = format!("value={}&header=x-bomb", "%7B%7Bsecret:zz-bomb%7D%7D".repeat(5));
    let ran = dry_run("acme-chat", format!("acme-chat://x/?target={}&{bomb}", sink.url("/hook"))).await;
    assert_eq!(ran["report"]["outcome"], "failed", "{ran}");
    assert!(ran["report"]["logs"].to_string().contains("at most 4 secret placeholders"), "{ran}");
    assert_eq!(sink.received().len(), 1, "nothing else was sent");

    // Names and prefixes only, to the owner only; a prefix is required.
    let (status, listed) = service.call("GET", "/v1/notifiers/acme-chat/secrets", Some(ACME), vec![]).await;
    assert_eq!((status, &listed["secrets"][0]["name"]), (200, &"pager_key".into()), "{listed}");
    assert_eq!(listed["secrets"][0]["url"], sink.url("/hook"));
    let (status, _) = service.call("GET", "/v1/notifiers/acme-chat/secrets", Some(GLOBEX), vec![]).await;
    assert_eq!(status, 404);
    let put = |name: &str, url: &str| format!("/v1/notifiers/acme-chat/secrets/{name}?url={url}");
    let (status, _) = service.call("PUT", &put("stolen", &sink.url("/")), Some(GLOBEX), b"x".to_vec()).await;
    assert_eq!(status, 404);
    for (path, value) in [
        (put("pager_key", &sink.url("/")), b"bad\x01value".to_vec()),
        (put("k", "ftp://h/"), b"v".to_vec()),
        ("/v1/notifiers/acme-chat/secrets/k".to_owned(), b"v".to_vec()),
    ] {
        let (status, answer) = service.call("PUT", &path, Some(ACME), value).await;
        assert_eq!(status, 400, "{path}: {answer}");
    }

    // Nowhere to be read: log, metrics, answers, the database file.
    let (_, shown) = service.call("GET", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await;
    let (_, logs) = service.call("GET", "/v1/notifiers/acme-chat/logs", Some(ACME), vec![]).await;
    let everything = [
        service.log_text(),
        service.get_as(Some(OPERATOR), "/metrics").await.1,
        listed.to_string(),
        shown.to_string(),
        logs.to_string(),
    ];
    for (place, text) in ["log", "metrics", "secret list", "notifier", "plugin logs"].iter().zip(&everything)
    {
        assert!(!text.contains(SECRET), "the secret is in the {place}");
    }
    // The database and its write-ahead log hold the secret's name, not its value.
    let database: Vec<u8> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("tocsin.sqlite"))
        .flat_map(|path| std::fs::read(path).unwrap())
        .collect();
    let holds = |needle: &str| database.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds("pager_key") && !holds(SECRET), "the value is stored encrypted");

    assert_eq!(
        service.call("DELETE", "/v1/notifiers/acme-chat/secrets/pager_key", Some(ACME), vec![]).await.0,
        204
    );
    let ran =
        dry_run("acme-chat", format!("acme-chat://x/?target={}&{placeholder}", sink.url("/after"))).await;
    assert!(ran["report"]["logs"].to_string().contains("pager_key"), "deleted: {ran}");
}

/// Issue 23, finding 6: `/metrics` named every tenant to anyone. Without
/// a metrics token it names none; with one it answers only that token and
/// the operator's; a deleted notifier's series go with it.
#[tokio::test]
async fn metrics_name_tenants_only_to_the_token_holders_and_forget_deleted_notifiers() {
    const METRICS: &str = "metrics-token";
    let vhost = TestVhost::create();
    // The second request is answered a while after it arrives.
    let slow_second = Reply::Delayed(Duration::from_millis(1500), Box::new(Reply::status(200)));
    let sink = Webhook::start(Reply::Script(vec![Reply::status(200), slow_second])).await.unwrap();
    let service =
        Service::start_logging(TOCSIN, &tenants_config(&vhost, ""), "info,tocsin::dispatch=debug").await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);
    publish(&vhost, &format!("acme-chat://x/?target={}", sink.url("/m")), 1).await;
    let delivered = r#"tocsin_deliveries_total{plugin="acme-chat",tenant="acme",outcome="delivered"}"#;
    let counted = eventually(Duration::from_secs(10), async || {
        service.metric_as(Some(OPERATOR), delivered).await == 1.0
    })
    .await;
    assert!(counted, "{}", service.log_text());

    // No metrics token: everyone gets the metrics, none naming a tenant.
    let (status, public) = service.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(!public.contains("acme"), "the anonymous view names a tenant: {public}");
    assert!(public.contains("tocsin_tenant_deliveries_total{outcome=\"delivered\"} 1"), "{public}");
    assert!(public.contains("tocsin_broker_connected 1"), "the service's own series are there: {public}");
    let (_, as_tenant) = service.get_as(Some(GLOBEX), "/metrics").await;
    assert!(!as_tenant.contains("acme"), "a tenant's token is no metrics token: {as_tenant}");
    let (_, whole) = service.get_as(Some(OPERATOR), "/metrics").await;
    for series in [
        "tocsin_deliveries_total{plugin=\"acme-chat\",tenant=\"acme\"",
        "tocsin_delivery_duration_seconds_count{plugin=\"acme-chat\",tenant=\"acme\"}",
    ] {
        assert!(whole.contains(series), "{series} in the operator's view: {whole}");
    }

    // Deleted while a delivery is in flight: its series go, on this host,
    // and that delivery's end does not bring them back.
    publish(&vhost, &format!("acme-chat://x/?target={}", sink.url("/slow")), 1).await;
    let in_flight = eventually(Duration::from_secs(10), async || sink.received().len() == 2).await;
    assert!(in_flight, "{}", service.log_text());
    assert_eq!(service.call("DELETE", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await.0, 204);
    let (_, after) = service.get_as(Some(OPERATOR), "/metrics").await;
    assert!(!after.contains("acme-chat"), "a deleted notifier's series stay: {after}");
    let ended = eventually(Duration::from_secs(10), async || {
        service.lines_with("dispatch: Delivered.").iter().filter(|line| line["plugin"] == "acme-chat").count()
            == 2
    })
    .await;
    assert!(ended, "the delivery in flight ended: {}", service.log_text());
    let (_, after) = service.get_as(Some(OPERATOR), "/metrics").await;
    assert!(!after.contains("acme-chat"), "the delivery in flight brought its series back: {after}");
    drop(service);

    // A metrics token: only it and the operator's are answered.
    let hash = TokenHash::of(METRICS).to_hex();
    let config = tenants_config(&vhost, "").replacen(
        "[api]\n",
        &format!("[api]\nmetrics_token_sha256 = \"{hash}\"\n"),
        1,
    );
    let service = Service::start(TOCSIN, &config).await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);
    publish(&vhost, &format!("acme-chat://x/?target={}", sink.url("/m")), 1).await;
    let counted = eventually(Duration::from_secs(10), async || {
        service.metric_as(Some(METRICS), delivered).await == 1.0
    })
    .await;
    assert!(counted, "{}", service.log_text());
    for (token, expected) in
        [(None, 401), (Some(ACME), 401), (Some("wrong"), 401), (Some(METRICS), 200), (Some(OPERATOR), 200)]
    {
        let (status, text) = service.get_as(token, "/metrics").await;
        assert_eq!(status, expected, "{token:?}: {text}");
        assert_eq!(text.contains("acme-chat"), expected == 200, "{token:?}: {text}");
    }
    let (_, refused) = service.call("GET", "/metrics", None, vec![]).await;
    assert_eq!(refused["error"]["code"], "unauthenticated", "{refused}");
}

/// Issue 23, finding 6: the API spoke plain HTTP only, so tokens and
/// secret values crossed the network in clear text. Given a certificate
/// and key it speaks TLS: a client trusting the CA uploads and reads
/// through it, the `tocsin plugin` CLI too (`SSL_CERT_FILE`), and neither
/// plain HTTP nor a client that does not trust the certificate gets an
/// answer.
#[tokio::test]
async fn the_api_speaks_tls_when_given_a_certificate() {
    let vhost = TestVhost::create();
    let ca = TestCa::new();
    let server = ca.server("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca_file) =
        (file("cert.pem", &server.cert_pem), file("key.pem", &server.key_pem), file("ca.pem", ca.pem()));
    let extra = format!("tls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\n");
    let service = Service::start_tls(TOCSIN, &tenants_config(&vhost, &extra), ca.pem()).await;
    assert!(service.api.starts_with("https://127.0.0.1:"), "{}", service.api);

    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await.0, 201);
    let (status, shown) = service.call("GET", "/v1/notifiers/acme-chat", Some(ACME), vec![]).await;
    assert_eq!((status, &shown["notifier"]["scheme"]), (200, &"acme-chat".into()), "{shown}");

    let mut cli = tokio::process::Command::new(TOCSIN);
    cli.args(["plugin", "list"]).env("TOCSIN_API", &service.api).env("TOCSIN_TOKEN", ACME);
    let output = cli.env("SSL_CERT_FILE", &ca_file).output().await.unwrap();
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert_eq!(listed["notifiers"][0]["scheme"], "acme-chat", "{}", String::from_utf8_lossy(&output.stderr));

    let plain = service.api.replace("https://", "http://") + "/healthz";
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answered = client.get(&plain).timeout(Duration::from_secs(5)).send().await;
    assert!(answered.is_err(), "plain HTTP got an answer: {answered:?}");
    let untrusting = reqwest::Client::builder().no_proxy().tls_certs_only([]).build().unwrap();
    let refused = untrusting.get(format!("{}/healthz", service.api)).send().await.unwrap_err();
    assert!(format!("{refused:?}").contains("UnknownIssuer"), "{refused:?}");
    let (status, _) = service.get("/healthz").await;
    assert_eq!(status, 200, "a client trusting the CA still gets through");
}

/// Issue 23, finding 6: the API had no request limits. Each caller has a
/// rate and a number of requests being answered at once; past either it
/// gets 429 with `Retry-After`, and other callers are answered as before.
#[tokio::test]
async fn each_caller_has_a_request_rate_and_requests_at_once_and_others_are_still_answered() {
    let vhost = TestVhost::create();
    let hang = Webhook::start(Reply::Hang).await.unwrap();
    let limits = "requests_per_minute = 1\nrequest_burst = 5\nrequests_at_once = 1\n";
    let service = Service::start(TOCSIN, &tenants_config(&vhost, limits)).await;
    let list = async |token: &str| service.call("GET", "/v1/notifiers", Some(token), vec![]).await;

    // acme's one place is held by a dry run waiting on an endpoint that
    // never answers: acme is told busy, globex and the operator are served.
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);
    let body = serde_json::json!({ "action": format!("acme-chat://x/?target={}", hang.url("/")) });
    let dry_run = tokio::spawn({
        let (api, body) = (service.api.clone(), body.to_string());
        async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            client
                .post(format!("{api}/v1/notifiers/acme-chat/dry-run"))
                .bearer_auth(ACME)
                .body(body)
                .send()
                .await
        }
    });
    let waiting = eventually(Duration::from_secs(10), async || !hang.received().is_empty()).await;
    assert!(waiting, "{}", service.log_text());
    let (status, busy) = list(ACME).await;
    assert_eq!((status, &busy["error"]["code"]), (429, &"busy".into()), "{busy}");
    assert_eq!(busy["error"]["retry_after_ms"], 1000, "{busy}");
    assert_eq!(list(GLOBEX).await.0, 200);
    assert_eq!(list(OPERATOR).await.0, 200);
    assert!(!dry_run.is_finished(), "acme's request was still being answered");
    dry_run.abort();

    // globex's rate, one request after another: a burst of five (one is
    // spent above), then one a minute.
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(list(GLOBEX).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused =
        client.get(format!("{}/v1/notifiers", service.api)).bearer_auth(GLOBEX).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let refused: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(statuses, [200, 200, 200, 200, 429], "{answers:?}");
    assert_eq!(list(OPERATOR).await.0, 200, "the operator's rate is its own");
    let refusals = r#"tocsin_api_refusals_total{tenant="globex",reason="rate"}"#;
    assert_eq!(service.metric_as(Some(OPERATOR), refusals).await, 2.0);
}

/// The OpenAPI document is served, and every operation it lists is a route
/// of the service (axum's own 404 and 405, without a JSON error, would mean
/// it is not).
#[tokio::test]
async fn the_openapi_document_lists_routes_the_service_has() {
    let vhost = TestVhost::create();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await.0, 201);
    let (status, document) = service.call("GET", "/v1/openapi.json", None, vec![]).await;
    assert_eq!((status, &document["openapi"]), (200, &"3.1.0".into()));
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete"].into_iter().filter(|m| item.get(*m).is_some()) {
            let concrete = path.replace("{scheme}", "acme-chat").replace("{name}", "key");
            let body = if method == "post" && concrete.ends_with("activate") {
                br#"{"version":1}"#.to_vec()
            } else {
                vec![]
            };
            let (status, answer) =
                service.call(&method.to_uppercase(), &concrete, Some(OPERATOR), body).await;
            let ours = status != 404 && status != 405 || answer["error"]["code"].is_string();
            assert!(ours, "{method} {path}: {status} {answer}");
            let documented = item[method]["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, undocumented"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 14, "the 14 routes of api::router are all in the document");
}

/// aodh's own action check (aodh 23.0.0 from PyPI) behind the aodh-tocsin
/// paste filter: a tenant's scheme is "Unsupported" until tocsin serves it,
/// then accepted in its tenant's projects' alarms only, without restarting
/// anything; the operator's and aodh's schemes are accepted for all.
#[tokio::test]
async fn aodh_accepts_a_tenant_scheme_once_tocsin_serves_it_in_the_tenants_projects() {
    let vhost = TestVhost::create();
    let projects = "project_ids = [\"p-acme\"]\n\n[tenants.globex]";
    let service =
        Service::start(TOCSIN, &tenants_config(&vhost, "").replace("[tenants.globex]", projects)).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/aodh/check_actions.py");
    let check = async |project: &str| {
        let output = tokio::process::Command::new(tocsin_tests::aodh_python())
            .arg(&script)
            .args([
                &service.api,
                OPERATOR,
                project,
                "http://h/",
                "acme-chat://chat.example/room",
                "acme-nope://h/",
            ])
            .arg("pager://h/")
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let before = check("p-acme").await;
    assert_eq!(before["http://h/"], "accepted");
    assert_eq!(before["acme-chat://chat.example/room"], "Unsupported action acme-chat://chat.example/room");

    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await.0, 201);
    assert_eq!(upload(&service, "pager", OPERATOR, component(plugins::COUNTER)).await.0, 201);
    let acme = check("p-acme").await;
    assert_eq!(acme["acme-chat://chat.example/room"], "accepted", "{acme}");
    assert_eq!(acme["acme-nope://h/"], "Unsupported action acme-nope://h/");
    assert_eq!((&acme["http://h/"], &acme["pager://h/"]), (&"accepted".into(), &"accepted".into()));
    // Another project may not put acme's notifier in its alarms; the
    // operator's notifier is for every project.
    let other = check("p-other").await;
    assert_eq!(other["acme-chat://chat.example/room"], "Unsupported action acme-chat://chat.example/room");
    assert_eq!(other["pager://h/"], "accepted");
}

/// Dry runs take instance slots outside dispatch's bounds: a host runs at
/// most a few at once, one caller at most one of them, and answers 429
/// `busy` beyond. From the review of issue 23: one tenant's dry runs held
/// every slot, and other tenants' were answered busy.
#[tokio::test]
async fn dry_runs_beyond_the_callers_share_are_answered_busy_and_others_still_run() {
    let vhost = TestVhost::create();
    let hang = Webhook::start(Reply::Hang).await.unwrap();
    let extra = "[http]\ntimeout_ms = 3000\nmax_timeout_ms = 3000\n\n\
                 [tenants.globex.plugins.globex-chat]\nallow_hosts = [\"127.0.0.1\"]\n";
    let service = Service::start(TOCSIN, &tenants_config(&vhost, extra)).await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);
    assert_eq!(upload(&service, "globex-chat", GLOBEX, component(plugins::FETCH)).await.0, 201);
    let dry_run = async |scheme: &str, token: &str| {
        let body = serde_json::json!({ "action": format!("{scheme}://x/?target={}", hang.url("/")) });
        let path = format!("/v1/notifiers/{scheme}/dry-run");
        service.call("POST", &path, Some(token), body.to_string().into_bytes()).await
    };
    let acmes = dry_run("acme-chat", ACME);
    let then = async {
        let waiting = eventually(Duration::from_secs(10), async || hang.connections() == 1).await;
        assert!(waiting, "acme's dry run reached the sink");
        let again = dry_run("acme-chat", ACME).await;
        let globex = dry_run("globex-chat", GLOBEX).await;
        (again, globex)
    };
    let (first, ((status, again), globex)) = tokio::join!(acmes, then);
    assert_eq!((status, again["error"]["code"].as_str()), (429, Some("busy")), "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("1 of your dry runs"), "{again}");
    for (status, answer) in [first, globex] {
        assert_eq!(
            (status, answer["report"]["outcome"].as_str()),
            (200, Some("failed")),
            "timed out: {answer}"
        );
    }
    assert_eq!(hang.connections(), 2, "acme's first and globex's dry runs ran, acme's second did not");
    assert_eq!(dry_run("acme-chat", ACME).await.0, 200, "acme's place is free again");
}

/// The artifact cache keeps what stored versions need: a deleted
/// notifier's artifact and one of no stored component are removed when
/// the host next catches up with the store (here: at start).
#[tokio::test]
async fn compiled_artifacts_of_deleted_notifiers_are_removed() {
    let vhost = TestVhost::create();
    let state = tempfile::tempdir().unwrap();
    let config = tenants_config(&vhost, &format!("[uploads]\nstate_path = \"{}\"\n", state.path().display()));
    let artifacts = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(state.path().join("artifacts"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".cwasm"))
            .map(|name| name[..64].to_owned())
            .collect();
        names.sort();
        names
    };
    let sha = |path: &str| format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(component(path)));
    let mut first = Service::start(TOCSIN, &config).await;
    assert_eq!(upload(&first, "acme-kept", ACME, component(plugins::COUNTER)).await.0, 201);
    assert_eq!(upload(&first, "acme-gone", ACME, component(plugins::FETCH)).await.0, 201);
    assert_eq!(first.call("DELETE", "/v1/notifiers/acme-gone", Some(ACME), vec![]).await.0, 204);
    first.terminate(Duration::from_secs(20)).await.unwrap();
    let mut both = vec![sha(plugins::COUNTER), sha(plugins::FETCH)];
    both.sort();
    assert_eq!(artifacts(), both);
    let tag = std::fs::read_dir(state.path().join("artifacts"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.ends_with(".cwasm"))
        .map(|name| name[65..].to_owned())
        .unwrap();
    std::fs::write(state.path().join("artifacts").join(format!("{}-{tag}", "f".repeat(64))), b"stray")
        .unwrap();

    let second = Service::start(TOCSIN, &config).await;
    assert_eq!(artifacts(), [sha(plugins::COUNTER)], "{}", second.log_text());
    assert_eq!(
        second.lines_with("registry: Removed compiled artifacts no stored version needs.")[0]["removed"],
        2
    );
}

/// Issue 20, finding 2: a dry run's alarm id is bounded
/// (`intake.max_field_bytes`), and counted in the log caps with every line
/// it is written with. At e8aba4b a dry run took a 2 MB id (the body cap
/// was 2 MB) and wrote it with each of 100 lines: 202 MB of service log
/// from one request. There, a 5,000-byte id ran, and 63 lines of 1 KiB
/// were written with a 4,000-byte one.
#[tokio::test]
async fn a_dry_runs_alarm_id_is_bounded_and_counted_in_the_log_caps() {
    let vhost = TestVhost::create();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;
    assert_eq!(upload(&service, "acme-flood", ACME, component(plugins::LOG_FLOOD)).await.0, 201);
    let dry_run = async |alarm_id: &str| {
        let alarm =
            serde_json::json!({"alarm_id": alarm_id, "previous": "ok", "current": "alarm", "reason": "r"});
        let body = serde_json::json!({"action": "acme-flood://x/?lines=100", "alarm": alarm});
        service
            .call("POST", "/v1/notifiers/acme-flood/dry-run", Some(ACME), body.to_string().into_bytes())
            .await
    };
    let (status, refused) = dry_run(&"i".repeat(5_000)).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("alarm_id has 5000 bytes, more than the 4096 allowed"), "{refused}");

    let long_id = "i".repeat(4_000);
    let (status, ran) = dry_run(&long_id).await;
    assert_eq!(status, 200, "{ran}");
    // A line: 1,034 bytes of text (the escape written as `\u{1b}`), and
    // 4,000 + 10 + 4 of identity (alarm id, plugin, tenant): 12 fit in
    // the call's 64 KiB.
    let report = &ran["report"];
    assert_eq!(report["logs"].as_array().unwrap().len(), 12, "{report}");
    assert_eq!(report["log_dropped"], 88);
    let written: Vec<Value> = service.logs().into_iter().filter(|line| line["alarm_id"] == long_id).collect();
    assert_eq!(written.len(), 12 + 1, "the 12 lines and the warning of those dropped: {written:?}");
}

/// A tenant's plugin reaches what it was granted, whatever host its action
/// names: its deliveries take the per-host slots of its own tenant only.
/// Here acme's two deliveries hang (its plugin fetches an endpoint that
/// never answers) with actions naming the host of the platform's webhook,
/// and `per_host = 2`: an `http://` alarm to that webhook is still
/// delivered at once, not deferred. Before, the two hanging deliveries
/// held both slots of that host, and every alarm to it was deferred until
/// they timed out.
#[tokio::test]
async fn a_tenants_deliveries_cannot_take_the_slots_of_a_host_they_name() {
    let vhost = TestVhost::create();
    let hanging = Webhook::start(Reply::Hang).await.unwrap();
    let webhook = Webhook::start(Reply::status(200)).await.unwrap();
    let config = tenants_config(&vhost, "").replace("[dispatch]\n", "[dispatch]\nper_host = 2\n");
    let service = Service::start(TOCSIN, &config).await;
    assert_eq!(upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await.0, 201);
    let action = format!("acme-chat://{}/?target={}", webhook.addr, hanging.url("/never"));
    publish(&vhost, &action, 2).await;
    let held = eventually(Duration::from_secs(10), async || hanging.received().len() == 2).await;
    assert!(held, "{}", service.log_text());
    publish(&vhost, &webhook.url("/alarm"), 1).await;
    let delivered = eventually(Duration::from_secs(10), async || webhook.received().len() == 1).await;
    assert!(delivered, "{}", service.log_text());
    let deferred = r#"tocsin_deliveries_total{plugin="http",tenant="",outcome="deferred"}"#;
    assert_eq!(service.metric(deferred).await, 0.0, "{}", service.log_text());
    assert!(service.lines_with("Unable to notify alarm").is_empty(), "the hanging calls are still running");
}
