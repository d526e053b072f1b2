//! The console's background work across replicas (migration 0011): a bulk job started on
//! one server is followed to its end on another `openspot serve` process on the same
//! database; an upload previewed on one is imported on the other, once only even when
//! both are asked at the same time; the failed rows download from either, and from a
//! server started after the import; housekeeping purges old jobs and uploads.

use std::process::Command;

use openspot::domain::console;

use crate::both;
use crate::common::TestApp;
use crate::console::{exec, finished_job, many_members, signed_in, Browser, Page};
use crate::security::{serve_logged, stop};

const BIN: &str = env!("CARGO_BIN_EXE_openspot");

/// Another `openspot serve` process on the app's database; its base URL and process.
async fn replica(app: &TestApp) -> (String, std::process::Child) {
    let (child, listen, _log) =
        serve_logged(Command::new(BIN).args(["--database-url", &app.database_url, "serve", "--listen", "127.0.0.1:0"]))
            .await;
    (format!("http://{listen}"), child)
}

/// Posts `csv` to the import form of `b`'s server; the preview page's text.
async fn preview(b: &Browser<'_>, csv: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("members.csv"))
        .text("group", "");
    let r = b
        .client
        .post(format!("{}/console/import?_csrf={}", b.base, b.csrf))
        .header("cookie", format!("openspot_console={}", b.cookie.clone().unwrap()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The first link in `page` starting with `prefix`.
fn link(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in {text}"));
    text[at..].split('"').next().unwrap().to_string()
}

both!(a_bulk_job_started_on_one_replica_is_followed_on_another, |app| {
    let (mut a, _) = signed_in(&app).await;
    many_members(&app, 12).await;
    let (other, process) = replica(&app).await;
    let mut b = a.on(&other);
    let form =
        [("scope", "all"), ("action", "set_status"), ("target", "Deactivated"), ("value", ""), ("query", "q=user")];
    let confirm = a.post("/console/members/bulk", &form).await;
    assert!(confirm.text.contains("<strong>12 members</strong>"), "{}", confirm.text);
    let mut go = form.to_vec();
    go.push(("confirm", "1"));
    let started = a.post("/console/members/bulk", &go).await;
    assert_eq!(started.status, 303, "{}", started.text);
    let job = started.location().unwrap().to_string();
    // Polled only on the other replica, to its end.
    let done = finished_job(&mut b, &job).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("set status to Deactivated (12 members)"), "{}", done.text);
    assert!(done.text.contains("12 of 12 done") && done.text.contains("Finished."), "{}", done.text);
    let deactivated = b.get("/console/members?status=Deactivated").await;
    assert_eq!(deactivated.text.matches("class=\"pick\"").count(), 12, "{}", deactivated.text);
    // A job id nobody started.
    let missing = b.get(&format!("/console/jobs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    stop(process).await;
});

both!(an_upload_previewed_on_one_replica_is_imported_once_and_reported_everywhere, |app| {
    let (mut a, _) = signed_in(&app).await;
    assert_eq!(a.get("/console/import").await.status, 200);
    let (other, process) = replica(&app).await;
    let mut b = a.on(&other);
    let csv = "email,firstname,lastname\nnew@example.com,New,One\nnot-an-email,Bad,Row\nadmin@example.com,Ada,Admin\n";
    let shown = preview(&a, csv).await;
    assert!(shown.contains("create <strong>1</strong>") && shown.contains("fail <strong>1</strong>"), "{shown}");
    let run = link(&shown, "/console/import/");

    // Both replicas are asked to import it at once: one does, the other refuses.
    let (ra, rb) = tokio::join!(a.post(&run, &[]), b.post(&run, &[]));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [303, 409], "{} / {}", ra.text, rb.text);
    let started: &Page = if ra.status == 303 { &ra } else { &rb };
    let refused: &Page = if ra.status == 409 { &ra } else { &rb };
    assert!(refused.text.contains("already imported"), "{}", refused.text);
    let job = started.location().unwrap().to_string();
    assert!(job.ends_with("?from=import"), "{job}");

    // Followed on both replicas to the same end.
    let done_b = finished_job(&mut b, &job).await;
    let done_a = finished_job(&mut a, &job).await;
    for done in [&done_a, &done_b] {
        assert!(done.text.contains("1 created, 1 updated, 1 failed"), "{}", done.text);
    }
    assert_eq!(app.get("/v1/spotMembers?email[in]=new@example.com").await.body["total"], 1);
    let errors = link(&done_b.text, "/console/import/");
    assert!(errors.ends_with("/errors.csv"), "{errors}");
    for browser in [&mut a, &mut b] {
        let report = browser.get(&errors).await;
        assert_eq!(report.status, 200, "{}", report.text);
        assert_eq!(report.text.lines().next(), Some("line,email,reason"));
        assert!(report.text.contains("3,not-an-email,"), "{}", report.text);
        assert_eq!(report.text.lines().count(), 2, "{}", report.text);
    }
    // A third attempt, on either: still refused, and nothing was imported twice.
    assert_eq!(a.post(&run, &[]).await.status, 409);
    assert_eq!(b.post(&run, &[]).await.status, 409);

    // A server started after the import still has the report and the job's end.
    stop(process).await;
    let (restarted, process) = replica(&app).await;
    let mut c = a.on(&restarted);
    let later = c.get(&job).await;
    assert!(
        later.text.contains("1 created, 1 updated, 1 failed") && later.text.contains("Finished."),
        "{}",
        later.text
    );
    assert!(c.get(&errors).await.text.contains("not-an-email"));
    stop(process).await;
});

both!(housekeeping_purges_old_jobs_and_uploads, |app| {
    let (mut a, _) = signed_in(&app).await;
    assert_eq!(a.get("/console/import").await.status, 200);
    let csv = "email\nkept@example.com\nbad\n";
    // One upload imported (its report kept), one only previewed (its file waiting).
    let imported = link(&preview(&a, csv).await, "/console/import/");
    let job = a.post(&imported, &[]).await.location().unwrap().to_string();
    let done = finished_job(&mut a, &job).await;
    let errors = link(&done.text, "/console/import/");
    let waiting = link(&preview(&a, csv).await, "/console/import/");

    // Nothing is young enough to go.
    assert_eq!(console::purge_background(&app.db).await.unwrap(), 0);
    // Two days later: the waiting file is gone, the finished import's report stays.
    let day = 24 * 60 * 60 * 1000_i64;
    exec(&app, &format!("UPDATE console_uploads SET created_at = created_at - {}", 2 * day)).await;
    assert_eq!(console::purge_background(&app.db).await.unwrap(), 1);
    let gone = a.post(&waiting, &[]).await;
    assert_eq!(gone.status, 400, "{}", gone.text);
    assert!(gone.text.contains("upload the file again"), "{}", gone.text);
    assert!(a.get(&errors).await.text.contains(",bad,"));
    assert!(a.get(&job).await.text.contains("Finished."));
    // Past a week: the report and the job go too.
    exec(&app, &format!("UPDATE console_uploads SET created_at = created_at - {}", 6 * day)).await;
    exec(&app, &format!("UPDATE console_jobs SET updated_at = updated_at - {}", 8 * day)).await;
    assert_eq!(console::purge_background(&app.db).await.unwrap(), 2);
    assert_eq!(a.get(&errors).await.status, 400);
    assert_eq!(a.get(&job).await.status, 400);
});

both!(a_job_left_unfinished_by_a_stopped_replica_shows_as_stopped, |app| {
    let (mut a, _) = signed_in(&app).await;
    many_members(&app, 3).await;
    let form =
        [("scope", "all"), ("action", "set_status"), ("target", "Deactivated"), ("value", ""), ("query", "q=user")];
    let mut go = form.to_vec();
    go.push(("confirm", "1"));
    let job = a.post("/console/members/bulk", &go).await.location().unwrap().to_string();
    finished_job(&mut a, &job).await;
    // As if the replica running it had stopped mid-way, 11 minutes ago.
    let minute = 60 * 1000_i64;
    exec(
        &app,
        &format!("UPDATE console_jobs SET finished = FALSE, done = 2, updated_at = updated_at - {}", 11 * minute),
    )
    .await;
    let page = a.get(&job).await;
    assert!(page.text.contains("2 of 3 done"), "{}", page.text);
    assert!(page.text.contains("Stopped: the server running it stopped"), "{}", page.text);
    assert!(!page.text.contains("hx-trigger"), "no more polling: {}", page.text);
});
