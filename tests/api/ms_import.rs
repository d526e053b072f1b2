//! `POST /v1/spotMembers~import`: CSV and XLSX uploads, row failures, dry runs, re-runs,
//! groups and limits.

#[path = "../support/xlsx.rs"]
mod xlsx;

use std::io::Write;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, Resp, TestApp};
use xlsx::xlsx_with;

pub async fn upload(app: &TestApp, form: Form) -> Resp {
    let r = app
        .client
        .post(format!("{}/v1/spotMembers~import", app.base))
        .header("authorization", &app.key)
        .multipart(form)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, body, text, headers }
}

pub fn file_part(bytes: Vec<u8>, name: &str) -> Part {
    Part::bytes(bytes).file_name(name.to_string())
}

async fn setup_properties(app: &TestApp) {
    for body in [
        json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]}),
        json!({"label": "Seats", "type": "Number"}),
        json!({"label": "Consent", "type": "Boolean"}),
        json!({"label": "Joined", "type": "Date"}),
        json!({"label": "Topics", "type": "MultipleSelect", "possibleValues": ["rust", "go"]}),
    ] {
        let r = app.post("/v1/customProperties", body).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

async fn member_values(app: &TestApp, email: &str) -> Value {
    let r = app.get(&format!("/v1/spotMembers?email[in]={email}")).await;
    let id = r.body["items"][0]["id"].as_str().expect("member exists").to_string();
    let v = app.get(&format!("/v1/spotMembers/{id}/customPropertiesValues")).await;
    let mut out = serde_json::Map::new();
    for item in v.body["items"].as_array().unwrap() {
        out.insert(item["customPropertySlug"].as_str().unwrap().to_string(), item["value"].clone());
    }
    out.insert("firstname".into(), r.body["items"][0]["firstname"].clone());
    Value::Object(out)
}

const CSV: &str = "\u{feff}Email,FirstName,lastname,plan,seats,consent,joined,topics\r\n\
ada@example.com,Ada,Lovelace,pro,5,yes,2024-01-10,rust;go\r\n\
not-an-email,Bob,B,free,1,no,2024-01-11,\r\n\
carol@example.com,Carol,C,gold,1,no,2024-01-12,\r\n\
dan@example.com,\"Dan, Jr\",D,,,,,\r\n\
ADA@example.com,Ada Augusta,,,7,,,\r\n";

both!(csv_import_reports_bad_rows_and_lands_good_ones, |app| {
    setup_properties(&app).await;
    let r = upload(&app, Form::new().part("file", file_part(CSV.as_bytes().to_vec(), "m.csv"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["created"], 2, "{}", r.text);
    assert_eq!(r.body["updated"], 1, "the repeated email updates the first row's member");
    let failed = r.body["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["line"], 3);
    assert_eq!(failed[0]["email"], "not-an-email");
    assert_eq!(failed[1]["line"], 4);
    assert!(failed[1]["reason"].as_str().unwrap().contains("gold"), "{}", r.text);
    let ada = member_values(&app, "ada@example.com").await;
    assert_eq!(ada["firstname"], "Ada Augusta");
    assert_eq!(ada["plan"], "pro");
    assert_eq!(ada["seats"], 7);
    assert_eq!(ada["consent"], true);
    assert_eq!(ada["joined"], "2024-01-10");
    assert_eq!(ada["topics"], json!(["rust", "go"]));
    assert_eq!(member_values(&app, "dan@example.com").await["firstname"], "Dan, Jr");
    assert_eq!(
        app.get("/v1/spotMembers?email[in]=carol@example.com").await.body["total"],
        0,
        "a failed row writes nothing"
    );
    let list = app.get("/v1/spotMembers").await;
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["items"][0]["status"], "Invited");

    // Running the same file again creates no one and, nothing having changed, writes nothing.
    let ada_updated_at = |list: Value| {
        list["items"].as_array().unwrap().iter().find(|m| m["email"] == "ada@example.com").unwrap()["updatedAt"].clone()
    };
    let before = ada_updated_at(app.get("/v1/spotMembers").await.body);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = upload(&app, Form::new().part("file", file_part(CSV.as_bytes().to_vec(), "m.csv"))).await;
    assert_eq!((again.body["created"].clone(), again.body["updated"].clone()), (json!(0), json!(3)), "{}", again.text);
    let list = app.get("/v1/spotMembers").await.body;
    assert_eq!(list["total"], 2);
    assert_eq!(ada_updated_at(list), before, "an unchanged row is not rewritten");

    // A file with other values updates only the columns it has.
    let changed = "email,seats,topics\nADA@example.com,9,go\n";
    let r = upload(&app, Form::new().part("file", file_part(changed.as_bytes().to_vec(), "m.csv"))).await;
    assert_eq!((r.body["created"].clone(), r.body["updated"].clone()), (json!(0), json!(1)), "{}", r.text);
    let ada = member_values(&app, "ada@example.com").await;
    assert_eq!((ada["seats"].clone(), ada["topics"].clone()), (json!(9), json!(["go"])));
    assert_eq!((ada["plan"].clone(), ada["firstname"].clone()), (json!("pro"), json!("Ada Augusta")));
    assert_ne!(ada_updated_at(app.get("/v1/spotMembers").await.body), before);
});

both!(dry_run_writes_nothing, |app| {
    setup_properties(&app).await;
    let form = Form::new().part("file", file_part(CSV.as_bytes().to_vec(), "m.csv")).text("dryRun", "true");
    let r = upload(&app, form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["created"].clone(), r.body["updated"].clone()), (json!(2), json!(1)));
    assert_eq!(r.body["failed"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 0);
});

both!(xlsx_import_with_typed_cells_and_groups, |app| {
    setup_properties(&app).await;
    let group = app.post("/v1/groups", json!({"name": "Imported"})).await.body["id"].as_str().unwrap().to_string();
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
    for (c, h) in ["email", "firstname", "seats", "consent", "joined", "plan"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "xl@example.com").unwrap();
    ws.write_string(1, 1, "Xena").unwrap();
    ws.write_number(1, 2, 42.0).unwrap();
    ws.write_boolean(1, 3, true).unwrap();
    ws.write_datetime_with_format(1, 4, rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 3, 5).unwrap(), &date).unwrap();
    ws.write_string(1, 5, "free").unwrap();
    ws.write_string(2, 0, "yo@example.com").unwrap();
    ws.write_string(2, 2, "many").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let form = Form::new().part("file", file_part(bytes, "members.xlsx")).text("groupId", group.clone());
    let r = upload(&app, form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["created"], 1, "{}", r.text);
    assert_eq!(r.body["failed"][0]["line"], 3);
    let xl = member_values(&app, "xl@example.com").await;
    assert_eq!(
        (xl["seats"].clone(), xl["consent"].clone(), xl["joined"].clone()),
        (json!(42), json!(true), json!("2024-03-05"))
    );
    let members = app.get(&format!("/v1/groups/{group}/spotMembers")).await;
    assert_eq!(members.body["total"], 1);
    assert_eq!(members.body["items"][0]["email"], "xl@example.com");
});

both!(refused_files_and_limits, |app| {
    let r = upload(&app, Form::new().part("file", file_part(b"email,plna\na@x.io,1\n".to_vec(), "m.csv"))).await;
    assert!(assert_ms_error(&r, 400).contains("'plna'"), "{}", r.text);
    let r = upload(&app, Form::new().part("file", file_part(b"firstname\nAda\n".to_vec(), "m.csv"))).await;
    assert!(assert_ms_error(&r, 400).contains("email"));
    let r = upload(&app, Form::new().text("dryRun", "true")).await;
    assert!(assert_ms_error(&r, 400).starts_with("file"));
    let form = Form::new()
        .part("file", file_part(b"email\na@x.io\n".to_vec(), "m.csv"))
        .text("groupId", "01930000-0000-7000-8000-000000000000");
    assert!(assert_ms_error(&upload(&app, form).await, 400).starts_with("groupId"));
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 0, "nothing written by refused files");

    let mut big = String::from("email\n");
    for i in 0..2001 {
        big.push_str(&format!("m{i}@x.io\n"));
    }
    let r = upload(&app, Form::new().part("file", file_part(big.into_bytes(), "m.csv"))).await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");
    let huge = vec![b'a'; 6 << 20];
    let r = upload(&app, Form::new().part("file", file_part(huge, "m.csv"))).await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 0);
});

both!(statistics_are_refreshed_after_a_bulk_import, |app| {
    // A CLI import of 10,000+ rows ends with this; it must run outside any transaction
    // on PostgreSQL (VACUUM) and leave fresh planner statistics behind.
    app.invite("a@x.io").await;
    app.db.analyze_after_bulk_write().await.expect("statistics refreshed");
    match &app.db {
        openspot::Db::Sqlite(p, ..) => {
            let analysed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'members'")
                .fetch_one(p)
                .await
                .expect("sqlite_stat1");
            assert!(analysed > 0, "members has statistics");
        }
        openspot::Db::Postgres(p) => {
            let analysed: Option<i64> = sqlx::query_scalar(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'member_property_values'",
            )
            .fetch_optional(p)
            .await
            .expect("pg_stat_user_tables");
            assert!(analysed.unwrap_or(0) > 0, "member_property_values was analysed");
        }
    }
});

const SHEET_START: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#;
const SHEET_END: &[u8] = b"</sheetData></worksheet>";

fn sheet(rows: &'static str) -> impl Fn(&mut dyn Write) {
    move |w: &mut dyn Write| {
        w.write_all(SHEET_START).unwrap();
        w.write_all(rows.as_bytes()).unwrap();
        w.write_all(SHEET_END).unwrap();
    }
}

/// Uploads `bytes` and checks the answer came within a few seconds (a hostile file is
/// refused before it is read whole).
async fn upload_quickly(app: &TestApp, bytes: Vec<u8>, name: &str) -> Resp {
    let started = std::time::Instant::now();
    let r = upload(app, Form::new().part("file", file_part(bytes, name))).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{name} took {:?}", started.elapsed());
    r
}

both!(hostile_files_are_refused_quickly_and_write_nothing, |app| {
    // Far more than 2,000 rows (4 MB): refused at row 2,001, the rest never parsed.
    let mut csv = String::from("email\n");
    for i in 0..320_000 {
        csv.push_str(&format!("m{i}@x.io\n"));
    }
    let r = upload_quickly(&app, csv.into_bytes(), "m.csv").await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");

    // Two cells at opposite corners: a dense range of the sheet would be 17 billion cells.
    let corners = xlsx_with(&[(
        "xl/worksheets/sheet1.xml",
        &sheet(r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#),
    )]);
    let r = upload_quickly(&app, corners, "m.xlsx").await;
    assert!(assert_ms_error(&r, 400).contains("column 16,384, beyond the 1,024 columns"), "{}", r.text);
    // Within the columns, the rows: A1 and A1048576 are a million rows.
    let deep = xlsx_with(&[(
        "xl/worksheets/sheet1.xml",
        &sheet(r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="CV1048576"><v>1</v></c></row>"#),
    )]);
    assert_eq!(assert_ms_error(&upload_quickly(&app, deep, "m.xlsx").await, 413), "Payload is too large");

    // A shared-string table declaring 100 billion strings (the reader would reserve them).
    let declared = xlsx_with(&[("xl/sharedStrings.xml", &|w: &mut dyn Write| {
        w.write_all(br#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="99999999999" uniqueCount="99999999999"><si><t>email</t></si></sst>"#).unwrap();
    })]);
    let r = upload_quickly(&app, declared, "m.xlsx").await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");

    // A zip bomb: a sheet of 256 MiB (blanks) in a few hundred KB.
    let bomb = xlsx_with(&[("xl/worksheets/sheet1.xml", &|w: &mut dyn Write| {
        w.write_all(SHEET_START).unwrap();
        let blanks = vec![b' '; 1 << 20];
        for _ in 0..256 {
            w.write_all(&blanks).unwrap();
        }
        w.write_all(SHEET_END).unwrap();
    })]);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let r = upload_quickly(&app, bomb, "m.xlsx").await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");

    // A date cell 1e300 days after 1900: the row fails, nothing panics.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "email").unwrap();
    ws.write_string(0, 1, "firstname").unwrap();
    ws.write_string(1, 0, "far@x.io").unwrap();
    ws.write_number_with_format(1, 1, 1e300, &rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd")).unwrap();
    let r = upload_quickly(&app, wb.save_to_buffer().unwrap(), "m.xlsx").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["created"].clone(), r.body["failed"][0]["line"].clone()), (json!(0), json!(2)), "{}", r.text);
    let reason = r.body["failed"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("firstname: the date") && reason.contains("outside the years 1 to 9999"), "{reason}");

    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 0, "nothing written by hostile files");
    assert_eq!(app.get("/healthz").await.status, 200);
});

// Found by the schemathesis contract run: a body that is not multipart (no body, JSON,
// or multipart without a boundary) was answered by axum's `text/plain` rejection
// instead of the MeltingSpot JSON error.
both!(a_body_that_is_not_multipart_is_a_json_400, |app| {
    let r = app.post("/v1/spotMembers~import", json!({"file": "email\nx@y.io"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("body: "), "{}", r.text);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let r = app.post_raw("/v1/spotMembers~import", b"--x--".to_vec(), "multipart/form-data").await;
    assert!(assert_ms_error(&r, 400).starts_with("body: "), "{}", r.text);
    let r = app.post_raw("/v1/spotMembers~import", Vec::new(), "text/csv").await;
    assert_ms_error(&r, 400);
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 0);
});
