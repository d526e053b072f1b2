//! `/v1/spotMembers`.

use serde_json::json;

use crate::both;
use crate::common::assert_ms_error;

both!(invite_get_and_list, |app| {
    let r = app
        .post("/v1/spotMembers", json!({"email": " Ada@Example.com "}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["email"], "Ada@Example.com");
    assert_eq!(r.body["status"], "Invited");
    assert_eq!(r.body["role"], "Member");
    assert_eq!(r.body["lang"], "en");
    assert_eq!(r.body["warnings"], 0);
    assert_eq!(r.body["spotId"], app.spot_id.to_string());
    assert!(r.body["updatedAt"].as_i64().unwrap() > 1_000_000_000_000);
    assert_eq!(r.body["embedBaseUrls"]["default"], app.base);

    let again = app
        .post("/v1/spotMembers", json!({"email": "ada@example.COM"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], id.as_str());

    let got = app.get(&format!("/v1/spotMembers/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let list = app.get("/v1/spotMembers").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["id"], id.as_str());
});

both!(unknown_member_is_404, |app| {
    let r = app
        .get("/v1/spotMembers/01930000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
    let r = app.get("/v1/spotMembers/not-a-uuid").await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
});
