//! The refusals of words outside a vocabulary (course status, participant status,
//! member role and status, group type, property type) keep their exact messages:
//! `domain::vocab` replaced the string checks without changing what clients read.

use serde_json::json;

use crate::both;
use crate::common::assert_ms_error;

both!(unknown_words_are_refused_with_the_messages_of_before, |app| {
    let bad_course = |field: &'static str, bad: &'static str| json!({"title": "x", field: bad});
    for (field, bad, want) in [
        ("status", "Archived", "status: must be one of Draft, Published"),
        ("privacy", "Hidden", "privacy: must be one of Public, Secret"),
        ("navigationMode", "Random", "navigationMode: must be one of Flexible, Sequential"),
    ] {
        let msg = assert_ms_error(&app.post("/v1/courses", bad_course(field, bad)).await, 400);
        assert!(msg.contains(want), "{field}={bad} → {msg}");
    }

    let course = app.post("/v1/courses", json!({"title": "Rust"})).await;
    let cid = course.body["id"].as_str().unwrap().to_string();
    let mid = app.invite("ada@example.com").await;
    let p = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": mid})).await;
    let pid = p.body["id"].as_str().unwrap().to_string();
    for bad in ["Invited", "started", "Gone"] {
        let r = app.put(&format!("/v1/courses/{cid}/participants/{pid}"), json!({"status": bad})).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.contains("status: must be one of Started, Completed, Unenrolled"), "{bad} → {msg}");
    }
    let r = app.put(&format!("/v1/courses/{cid}/participants/{pid}"), json!({"status": "Completed"})).await;
    let msg = assert_ms_error(&r, 409);
    assert!(msg.contains("A participant cannot move from Invited to Completed"), "{msg}");

    let msg = assert_ms_error(&app.put(&format!("/v1/spotMembers/{mid}"), json!({"role": "Owner"})).await, 400);
    assert!(msg.contains("role: must be one of Member, Admin"), "{msg}");
    for bad in ["Invited", "Left", "accepted"] {
        let msg = assert_ms_error(&app.put(&format!("/v1/spotMembers/{mid}"), json!({"status": bad})).await, 400);
        assert!(msg.contains("status: must be one of Accepted, Deactivated, Rejected"), "{bad} → {msg}");
    }

    let msg = assert_ms_error(&app.post("/v1/groups", json!({"name": "g", "type": "Dynamic"})).await, 400);
    assert!(msg.contains("type: must be Static or Smart"), "{msg}");

    let msg = assert_ms_error(&app.post("/v1/customProperties", json!({"label": "Plan", "type": "Enum"})).await, 400);
    assert!(msg.contains("type: must be one of Text, Number, Boolean, Date, SingleSelect, MultipleSelect"), "{msg}");
    let msg = assert_ms_error(&app.post("/v1/customProperties", json!({"label": "Plan"})).await, 400);
    assert!(
        msg.contains("type: is required (one of Text, Number, Boolean, Date, SingleSelect, MultipleSelect)"),
        "{msg}"
    );
});
