//! `serve --demo`: a spot with sample data to try the APIs against.
//! Re-running it finds the existing demo spot and gives it a fresh key (keys are
//! stored hashed, so the old one cannot be shown again).

use super::groups::{self, NewGroup};
use super::properties::{self, NewProperty};
use super::{courses, custom_roles, members, spots};
use crate::domain::ids::SpotId;
use crate::error::Result;
use crate::store::Db;

pub const DEMO_SPOT_NAME: &str = "openspot demo";

/// Creates (or refreshes) the demo spot and returns its id and a usable API key.
pub async fn seed(db: &Db) -> Result<(SpotId, String)> {
    if let Some(existing) = spots::list_spots(db).await?.into_iter().find(|s| s.name == DEMO_SPOT_NAME) {
        let key = spots::rotate_key(db, existing.id).await?;
        return Ok((existing.id, key));
    }
    let (spot, key) = spots::create_spot(db, DEMO_SPOT_NAME).await?;
    let moderator = custom_roles::create_role(
        db,
        spot.id,
        "Moderator",
        Some("Moderates discussions".into()),
        vec!["moderation.*".into()],
    )
    .await?;
    let people = [
        ("ada@example.com", "Ada", "Lovelace", "Accepted"),
        ("grace@example.com", "Grace", "Hopper", "Accepted"),
        ("alan@example.com", "Alan", "Turing", "Deactivated"),
        ("katherine@example.com", "Katherine", "Johnson", "Accepted"),
        ("linus@example.com", "", "", ""),
    ];
    let mut ids = Vec::new();
    for (i, (email, first, last, status)) in people.iter().enumerate() {
        let (m, _) = members::invite_member(db, spot.id, email, false).await?;
        let patch = members::MemberPatch {
            firstname: Some(first.to_string()),
            lastname: Some(last.to_string()),
            status: (!status.is_empty()).then(|| status.to_string()),
            role: (i == 0).then(|| "Admin".to_string()),
            custom_role_id: (i == 1).then_some(Some(moderator.id)),
            ..Default::default()
        };
        let m = members::update_member(db, spot.id, m.id, patch).await?;
        ids.push(m.id);
    }
    let pioneers = groups::create_group(
        db,
        spot.id,
        NewGroup {
            name: Some("Pioneers".into()),
            description: Some("A static group".into()),
            emoji: Some("🚀".into()),
            ..Default::default()
        },
    )
    .await?;
    let id_strings: Vec<String> = ids.iter().take(3).map(|id| id.to_string()).collect();
    groups::bulk_add(db, spot.id, pioneers.id, &id_strings).await?;
    groups::create_group(
        db,
        spot.id,
        NewGroup {
            name: Some("Active members".into()),
            description: Some("A smart group: every Accepted member".into()),
            kind: Some("Smart".into()),
            rules: Some(serde_json::json!({"operator": "AND", "conditions": [
                {"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}
            ]})),
            ..Default::default()
        },
    )
    .await?;
    let course = courses::create_course(
        db,
        spot.id,
        courses::CourseInput {
            title: Some("Welcome to the community".into()),
            description: Some(Some("Start here".into())),
            status: Some("Published".into()),
            privacy: Some("Public".into()),
            ..Default::default()
        },
    )
    .await?;
    courses::link_groups(db, spot.id, course.id, &[pioneers.id.to_string()]).await?;
    // One custom property of every type, with values for the first member.
    let defs = [
        ("Company", "Text", vec![]),
        ("Seats", "Number", vec![]),
        ("Newsletter", "Boolean", vec![]),
        ("Customer since", "Date", vec![]),
        ("Plan", "SingleSelect", vec!["free", "pro", "enterprise"]),
        ("Interests", "MultipleSelect", vec!["rust", "databases", "community"]),
    ];
    for (label, kind, options) in defs {
        properties::create_property(
            db,
            spot.id,
            NewProperty {
                label: Some(label.into()),
                kind: Some(kind.into()),
                possible_values: (!options.is_empty()).then(|| options.iter().map(|o| o.to_string()).collect()),
                ..Default::default()
            },
        )
        .await?;
    }
    if let Some(first) = ids.first() {
        let values = [
            ("company", serde_json::json!("Analytical Engines Ltd")),
            ("seats", serde_json::json!(12)),
            ("newsletter", serde_json::json!(true)),
            ("customer-since", serde_json::json!("2024-01-15")),
            ("plan", serde_json::json!("pro")),
            ("interests", serde_json::json!(["rust", "community"])),
        ];
        let items: Vec<(String, serde_json::Value, String)> =
            values.into_iter().map(|(slug, v)| (slug.to_string(), v, "value".to_string())).collect();
        properties::set_values(db, spot.id, *first, &items).await?;
    }
    Ok((spot.id, key))
}
