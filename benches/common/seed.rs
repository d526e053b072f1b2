//! Seeding for the benches that need a large spot: members inserted below the API in
//! multi-row statements (far faster than the API, and not what is being measured).

#![allow(dead_code)]

use openspot::domain::ids::SpotId;
use openspot::domain::properties::{self, NewProperty, PropertyDef};
use openspot::store::Db;
use uuid::Uuid;

/// Defines the custom property `slug` of type `kind` in the spot.
pub async fn property(db: &Db, spot: SpotId, slug: &str, label: &str, kind: &str) -> PropertyDef {
    let new = NewProperty {
        slug: Some(slug.into()),
        label: Some(label.into()),
        kind: Some(kind.into()),
        ..Default::default()
    };
    properties::create_property(db, spot, new).await.unwrap()
}

/// A SQL literal of a UUID for the backend.
pub fn uuid_lit(db: &Db, id: Uuid) -> String {
    match db {
        Db::Sqlite(..) => format!("X'{}'", id.simple()),
        Db::Postgres(_) => format!("'{id}'"),
    }
}

/// Runs `statements` in one transaction.
pub async fn exec_all(db: &Db, statements: Vec<String>) {
    match db {
        Db::Sqlite(p, ..) => {
            let mut tx = p.begin().await.unwrap();
            for s in &statements {
                sqlx::query(s).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            for s in &statements {
                sqlx::query(s).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
}

/// Inserts `n` members, and a value of the Number property `property` for every second
/// one, in 1,000-row statements within one transaction per 100,000 members.
pub async fn seed(db: &Db, spot: Uuid, property: Uuid, n: usize) -> Vec<Uuid> {
    let now = openspot::domain::now_ms();
    let (spot_lit, prop_lit) = (uuid_lit(db, spot), uuid_lit(db, property));
    let mut ids = Vec::with_capacity(n);
    let chunk = 1000;
    let mut statements = Vec::new();
    let mut i = 0;
    while i < n {
        let m = chunk.min(n - i);
        let mut sql = String::from(
            "INSERT INTO members (spot_id, id, email, email_norm, role, firstname, lastname, status, invited_at, \
             registered_at, updated_at) VALUES ",
        );
        let mut values = String::from(
            "INSERT INTO member_property_values (spot_id, member_id, property_id, ord, value_text, value_num) VALUES ",
        );
        let mut any_value = false;
        for j in 0..m {
            let id = Uuid::now_v7();
            ids.push(id);
            let k = i + j;
            let id_lit = uuid_lit(db, id);
            let status = if k % 3 == 0 { "Accepted" } else { "Invited" };
            let role = if k % 50 == 0 { "Admin" } else { "Member" };
            let reg = if k % 3 == 0 { (now - 1000).to_string() } else { "NULL".into() };
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({spot_lit}, {id_lit}, 'm{k}@bench.io', 'm{k}@bench.io', '{role}', 'First{}', 'Last{}', '{status}', \
                 {}, {reg}, {now})",
                k % 1000,
                k % 997,
                now - (n - k) as i64
            ));
            if k % 2 == 0 {
                if any_value {
                    values.push(',');
                }
                any_value = true;
                values.push_str(&format!("({spot_lit}, {id_lit}, {prop_lit}, 0, NULL, {})", (k / 2) % 100));
            }
        }
        statements.push(sql);
        if any_value {
            statements.push(values);
        }
        i += m;
        if statements.len() >= 200 || i == n {
            exec_all(db, std::mem::take(&mut statements)).await;
        }
    }
    exec_all(db, vec![format!("UPDATE spot_counters SET member_count = {n} WHERE spot_id = {spot_lit}")]).await;
    ids
}
