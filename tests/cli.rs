//! The real `openspot` binary: `--json` output, exit codes, `serve --demo` and a
//! graceful SIGTERM shutdown (SQLite in a temporary directory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/xlsx.rs"]
mod xlsx;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xlsx::xlsx_with;

fn openspot(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_openspot"))
        .arg("--database-url")
        .arg(db)
        .args(args)
        .env_remove("OPENSPOT_DATABASE_URL")
        .output()
        .expect("run openspot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exactly one JSON object on stdout.
fn one_object(stdout: &str) -> Value {
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON value ({e}): {stdout}"));
    assert!(v.is_object(), "{stdout}");
    v
}

#[test]
fn spot_commands_print_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let (code, out, _) = openspot(&db, &["spots", "create", "--name", "Acme", "--json"]);
    assert_eq!(code, 0);
    let created = one_object(&out);
    let spot = created["spotId"].as_str().unwrap().to_string();
    let key = created["apiKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("os_"));
    let (_, out, _) = openspot(&db, &["spots", "list", "--json"]);
    assert_eq!(one_object(&out)["spots"][0]["spotId"], spot.as_str());
    let (_, out, _) = openspot(&db, &["spots", "rotate-key", &spot, "--json"]);
    let rotated = one_object(&out);
    assert_eq!(rotated["spotId"], spot.as_str());
    assert_ne!(rotated["apiKey"], key.as_str());
    let (_, out, _) = openspot(&db, &["spots", "set-limits", &spot, "--per-10s", "5", "--json"]);
    assert_eq!(one_object(&out)["rateLimitPer10s"], 5);
    let (code, out, _) = openspot(&db, &["kaizala", "connectors", "create", "--spot", &spot, "--name", "c", "--json"]);
    assert_eq!(code, 0);
    let conn = one_object(&out);
    let app_id = conn["applicationId"].as_str().unwrap().to_string();
    assert!(conn["applicationSecret"].is_string());
    let (_, out, _) = openspot(
        &db,
        &["kaizala", "tokens", "create", "--application-id", &app_id, "--mobile-number", "+911199999999", "--json"],
    );
    let token = one_object(&out);
    assert!(token["refreshToken"].is_string() && token["refreshTokenExpiry"].is_i64());
    let (code, _, err) =
        openspot(&db, &["kaizala", "tokens", "create", "--application-id", &app_id, "--mobile-number", "911199999999"]);
    assert_ne!(code, 0);
    assert!(err.contains("mobile"), "{err}");
    let (code, _, err) = openspot(&db, &["spots", "rotate-key", "01930000-0000-7000-8000-000000000000"]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = openspot(&db, &["spots", "delete", &spot, "--json"]);
    assert_eq!((code, one_object(&out)["deleted"].clone()), (0, Value::Bool(true)));
    assert_eq!(openspot(&db, &["migrate"]).0, 0);
}

#[test]
fn backup_and_restore_round_trip_a_spot() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let created = one_object(&openspot(&db, &["spots", "create", "--name", "Acme", "--json"]).1);
    let backup = dir.path().join("acme.backup");
    let (code, out, err) = openspot(&db, &["backup", "--to", backup.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(one_object(&out)["bytes"].as_u64().unwrap() > 0);
    let (code, _, err) = openspot(&db, &["backup", "--to", backup.to_str().unwrap()]);
    assert_ne!(code, 0, "a backup never overwrites a file");
    assert!(err.contains("exists already"), "{err}");
    let spot_id = created["spotId"].as_str().unwrap();
    assert_eq!(openspot(&db, &["spots", "delete", spot_id, "--json"]).0, 0);
    assert_eq!(one_object(&openspot(&db, &["spots", "list", "--json"]).1)["spots"], Value::Array(vec![]));
    let (code, out, err) = openspot(&db, &["restore", "--from", backup.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(one_object(&out)["rows"].as_u64().unwrap() >= 1);
    let spots = one_object(&openspot(&db, &["spots", "list", "--json"]).1);
    assert_eq!(spots["spots"][0]["spotId"], created["spotId"], "{spots}");
}

#[test]
fn members_import_reports_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let spot = one_object(&openspot(&db, &["spots", "create", "--name", "Acme", "--json"]).1)["spotId"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, "email,firstname\na@x.io,Ada\nnope,Bo\nb@x.io,Bea\n").unwrap();
    let errors = dir.path().join("errors.csv");
    let csv_s = csv.to_str().unwrap();
    let (code, out, _) = openspot(&db, &["members", "import", "--spot", &spot, csv_s, "--dry-run", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(one_object(&out)["created"], 2);
    let (code, out, _) =
        openspot(&db, &["members", "import", "--spot", &spot, csv_s, "--json", "--errors", errors.to_str().unwrap()]);
    assert_eq!(code, 0);
    let report = one_object(&out);
    assert_eq!((report["created"].clone(), report["failed"][0]["line"].clone()), (Value::from(2), Value::from(3)));
    let written = std::fs::read_to_string(&errors).unwrap();
    assert!(written.starts_with("line,email,reason\n3,nope,"), "{written}");
    let (_, out, _) = openspot(&db, &["members", "import", "--spot", &spot, csv_s, "--json"]);
    assert_eq!(
        (one_object(&out)["created"].clone(), one_object(&out)["updated"].clone()),
        (Value::from(0), Value::from(2))
    );
    std::fs::write(&csv, "email,shoe_size\na@x.io,42\n").unwrap();
    let (code, _, err) = openspot(&db, &["members", "import", "--spot", &spot, csv_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("shoe_size"));
    let (code, _, _) = openspot(&db, &["members", "import", "--spot", &spot, "/nonexistent.csv"]);
    assert_eq!(code, 2);
    let (code, _, _) = openspot(
        &db,
        &["members", "import", "--spot", &spot, csv_s, "--group", "01930000-0000-7000-8000-000000000000"],
    );
    assert_eq!(code, 2);
}

/// Reads `serve`'s stderr up to its `listening on ADDRESS` line; returns that address
/// and the lines before it, and keeps draining the rest so the server never blocks.
fn wait_for_listening(child: &mut std::process::Child) -> (String, Vec<String>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut before = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve ended before listening: {before:?}");
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            let addr = addr.to_string();
            std::thread::spawn(move || for _ in stderr.lines() {});
            return (addr, before);
        }
        before.push(line.trim().to_string());
    }
}

#[test]
fn serve_demo_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_openspot"))
        .args(["--database-url", &db, "serve", "--demo", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The server binds port 0 itself and reports the port it got: no other process can
    // take it between a test's probe and the server's bind.
    let (listen, before) = wait_for_listening(&mut child);
    assert!(listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"), "{listen}");
    let key = before.iter().find_map(|l| l.strip_prefix("demo API key: ")).expect("demo key printed").to_string();
    let try_line = before.iter().find(|l| l.starts_with("try: curl")).expect("curl hint printed");
    assert!(try_line.ends_with(&format!("http://{listen}/v1/spotMembers")), "{try_line}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: Value = rt.block_on(async {
        // Bound before the line was printed: the first request is answered.
        let r = reqwest::Client::new()
            .get(format!("http://{listen}/v1/spotMembers"))
            .header("authorization", &key)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(body["total"], 5, "{body}");
    let groups: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{listen}/v1/groups"))
            .header("authorization", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(groups["total"], 2, "{groups}");
    let props: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{listen}/v1/customProperties"))
            .header("authorization", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let mut kinds: Vec<&str> = props["items"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["Boolean", "Date", "MultipleSelect", "Number", "SingleSelect", "Text"]);
    let courses: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{listen}/v1/courses"))
            .header("authorization", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(courses["total"], 1, "{courses}");
    // The console link printed for the demo's Admin signs in once.
    let console = before.iter().find(|l| l.starts_with("console (")).expect("console link printed");
    let url = console.rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with(&format!("http://{listen}/console/link?token=")), "{console}");
    let token = url.split("token=").nth(1).unwrap().to_string();
    let status = rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.post(format!("http://{listen}/console/link")).form(&[("token", token)]).send().await.unwrap();
        r.status().as_u16()
    });
    assert_eq!(status, 303);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

#[test]
fn members_import_refuses_hostile_files_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let spot = one_object(&openspot(&db, &["spots", "create", "--name", "Acme", "--json"]).1)["spotId"]
        .as_str()
        .unwrap()
        .to_string();
    let sheet = |rows: &'static str| {
        move |w: &mut dyn Write| {
            write!(w, r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#).unwrap()
        }
    };
    let cases: [(&str, Vec<u8>, &str); 2] = [
        // The dense range from A1 to XFD1048576 asked for 512 GiB and aborted the process.
        (
            "corners.xlsx",
            xlsx_with(&[(
                "xl/worksheets/sheet1.xml",
                &sheet(
                    r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#,
                ),
            )]),
            "beyond the 1,024 columns",
        ),
        // A declared count the reader reserved before reading a string.
        (
            "strings.xlsx",
            xlsx_with(&[("xl/sharedStrings.xml", &|w: &mut dyn Write| {
                w.write_all(br#"<sst uniqueCount="99999999999"><si><t>email</t></si></sst>"#).unwrap()
            })]),
            "more than 20,000,000 shared strings",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let started = Instant::now();
        let (code, _, err) = openspot(&db, &["members", "import", "--spot", &spot, path.to_str().unwrap(), "--json"]);
        assert!(started.elapsed() < Duration::from_secs(10), "{name}: {:?}", started.elapsed());
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(message), "{name}: {err}");
    }
    // A sheet from A1 to AMJ1048576 holding three cells is read as two rows, not as the
    // billion-cell dense range (32 GiB) the whole process aborted on; its header then
    // spans the used range, as a spreadsheet shows it.
    let import = |name: &str, rows: &'static str| {
        let path = dir.path().join(name);
        std::fs::write(&path, xlsx_with(&[("xl/worksheets/sheet1.xml", &sheet(rows))])).unwrap();
        let started = Instant::now();
        let answer = openspot(&db, &["members", "import", "--spot", &spot, path.to_str().unwrap(), "--json"]);
        assert!(started.elapsed() < Duration::from_secs(10), "{name}: {:?}", started.elapsed());
        answer
    };
    let (code, _, err) = import(
        "wide.xlsx",
        r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="A1048576" t="inlineStr"><is><t>deep@x.io</t></is></c><c r="AMJ1048576"><v>1</v></c></row>"#,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("column 2 has no header"), "{err}");
    let (code, out, err) = import(
        "deep.xlsx",
        r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="A1048576" t="inlineStr"><is><t>deep@x.io</t></is></c></row>"#,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(one_object(&out)["created"], 1);
    // A date serial out of any calendar fails its row instead of ending the process.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "email").unwrap();
    ws.write_string(0, 1, "firstname").unwrap();
    ws.write_string(1, 0, "far@x.io").unwrap();
    ws.write_number_with_format(1, 1, 1e300, &rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd")).unwrap();
    let path = dir.path().join("date.xlsx");
    std::fs::write(&path, wb.save_to_buffer().unwrap()).unwrap();
    let (code, out, err) = openspot(&db, &["members", "import", "--spot", &spot, path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report = one_object(&out);
    assert_eq!((report["created"].clone(), report["failed"][0]["line"].clone()), (Value::from(0), Value::from(2)));
    assert!(report["failed"][0]["reason"].as_str().unwrap().contains("outside the years 1 to 9999"), "{report}");
}

#[test]
fn admins_set_a_console_password_from_stdin_and_print_a_login_link() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("admins.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spot = rt.block_on(async {
        let pool = openspot::Db::connect_and_migrate(&db).await.unwrap();
        let (spot, _) = openspot::domain::spots::create_spot(&pool, "Acme").await.unwrap();
        let (m, _) = openspot::domain::members::invite_member(&pool, spot.id, "boss@example.com", false).await.unwrap();
        let patch = openspot::domain::members::MemberPatch { role: Some("Admin".into()), ..Default::default() };
        openspot::domain::members::update_member(&pool, spot.id, m.id, patch).await.unwrap();
        pool.close().await;
        spot.id.to_string()
    });
    let set = |password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_openspot"))
            .args([
                "--database-url",
                &db,
                "admins",
                "set-password",
                "--spot",
                &spot,
                "--email",
                "boss@example.com",
                "--json",
            ])
            .env_remove("OPENSPOT_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = set("short");
    assert_ne!(code, 0);
    assert!(err.contains("at least 12"), "{err}");
    let (code, out, err) = set("a long enough password");
    assert_eq!(code, 0, "{err}");
    assert_eq!(one_object(&out)["passwordSet"], true);
    let (code, out, _) = openspot(
        &db,
        &[
            "admins",
            "login-link",
            "--spot",
            &spot,
            "--email",
            "boss@example.com",
            "--public-url",
            "https://ops.example/",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let url = one_object(&out)["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://ops.example/console/link?token="), "{url}");
    let (code, _, err) = openspot(&db, &["admins", "login-link", "--spot", &spot, "--email", "nobody@example.com"]);
    assert_ne!(code, 0);
    assert!(err.contains("no member"), "{err}");
}
