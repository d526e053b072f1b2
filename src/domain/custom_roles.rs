//! Custom roles (`meltingspot-api.md` §3.2): a label, a description and permissions from
//! the documented enum. Deleting a role takes it away from its holders in the same
//! transaction, and re-evaluates them against the smart groups whose rules read
//! `customRoleId` (they no longer hold the role those rules may name).

use super::filter::{self, FieldSpec, Kind, ListQuery, Op};
use super::members::Member;
use super::{from_rows, now_ms};
use crate::domain::ids::{MemberId, RoleId, SpotId};
use crate::error::{Entity, Error, Result};
use crate::store::custom_roles::CustomRoleRow;
use crate::store::sql::{Cmp, Predicate};
use crate::store::{self, Db, Tx};

pub const PERMISSIONS: &[&str] = &[
    "live.*",
    "live.full.*",
    "live.limited.*",
    "moderation.*",
    "spot.member.invite.*",
    "course.limited.*",
    "course.full.*",
    "collection.full.*",
    "collection.limited.*",
];

pub const ROLE_FILTERS: &[FieldSpec] =
    &[FieldSpec { field: "label", column: "label", kind: Kind::Text, ops: &[Op::Eq, Op::Contains, Op::In] }];

/// Permissions as stored (a JSON array in a text column on both backends).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions(pub Vec<String>);

impl Permissions {
    pub fn to_json(&self) -> String {
        serde_json::Value::from(self.0.clone()).to_string()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CustomRole {
    pub spot_id: SpotId,
    pub id: RoleId,
    pub label: String,
    pub description: Option<String>,
    pub permissions: Permissions,
}

impl TryFrom<CustomRoleRow> for CustomRole {
    type Error = Error;
    /// Fails only on a corrupt permissions column (500).
    fn try_from(r: CustomRoleRow) -> Result<Self> {
        let permissions = serde_json::from_str(&r.permissions).map(Permissions).map_err(anyhow::Error::new)?;
        Ok(CustomRole { spot_id: r.spot_id, id: r.id, label: r.label, description: r.description, permissions })
    }
}

impl From<&CustomRole> for CustomRoleRow {
    fn from(r: &CustomRole) -> Self {
        CustomRoleRow {
            spot_id: r.spot_id,
            id: r.id,
            label: r.label.clone(),
            description: r.description.clone(),
            permissions: r.permissions.to_json(),
        }
    }
}

/// The role stored under `id`, or 404.
async fn stored_role(ex: store::Ex<'_>, spot_id: SpotId, id: RoleId) -> Result<CustomRole> {
    store::custom_roles::get(ex, spot_id, id).await?.ok_or(Error::NotFound(Entity::CustomRole))?.try_into()
}

fn check_label(label: &str) -> Result<String> {
    let label = label.trim();
    if label.is_empty() {
        return Err(Error::invalid("label", "must not be empty"));
    }
    Ok(label.to_string())
}

fn check_permissions(perms: Vec<String>) -> Result<Permissions> {
    for (i, p) in perms.iter().enumerate() {
        if !PERMISSIONS.contains(&p.as_str()) {
            return Err(Error::invalid(
                format!("permissions[{i}]"),
                format!("'{p}' is not a permission (allowed: {})", PERMISSIONS.join(", ")),
            ));
        }
    }
    let mut perms = perms;
    perms.dedup();
    Ok(Permissions(perms))
}

pub async fn list_roles(db: &Db, spot_id: SpotId, q: &ListQuery) -> Result<(Vec<CustomRole>, i64)> {
    let preds = filter::validate(&q.filters, ROLE_FILTERS)?;
    let mut c = db.conn().await?;
    let (rows, total) = store::custom_roles::list(c.ex(), spot_id, &preds, q.offset(), i64::from(q.limit)).await?;
    Ok((rows.into_iter().map(CustomRole::try_from).collect::<Result<_>>()?, total))
}

pub async fn get_role(db: &Db, spot_id: SpotId, id: RoleId) -> Result<CustomRole> {
    let mut c = db.conn().await?;
    stored_role(c.ex(), spot_id, id).await
}

pub async fn create_role(
    db: &Db,
    spot_id: SpotId,
    label: &str,
    description: Option<String>,
    permissions: Vec<String>,
) -> Result<CustomRole> {
    let role = CustomRole {
        spot_id,
        id: RoleId::generate(),
        label: check_label(label)?,
        description,
        permissions: check_permissions(permissions)?,
    };
    let mut tx = db.begin().await?;
    store::custom_roles::insert(tx.ex(), &(&role).into(), now_ms()).await?;
    tx.commit().await?;
    Ok(role)
}

pub async fn update_role(
    db: &Db,
    spot_id: SpotId,
    id: RoleId,
    label: Option<String>,
    description: Option<Option<String>>,
    permissions: Option<Vec<String>>,
) -> Result<CustomRole> {
    let label = label.as_deref().map(check_label).transpose()?;
    let permissions = permissions.map(check_permissions).transpose()?;
    let mut tx = db.begin().await?;
    let mut role = stored_role(tx.ex(), spot_id, id).await?;
    if let Some(l) = label {
        role.label = l;
    }
    if let Some(d) = description {
        role.description = d;
    }
    if let Some(p) = permissions {
        role.permissions = p;
    }
    store::custom_roles::update(tx.ex(), &(&role).into()).await?;
    tx.commit().await?;
    Ok(role)
}

/// Members read per statement while collecting a role's holders.
const HOLDERS_BATCH: i64 = 1000;

/// The ids of the members holding role `id`, in id order (keyset pages).
async fn holders(tx: &mut Tx, spot_id: SpotId, id: RoleId) -> Result<Vec<MemberId>> {
    let mut out: Vec<MemberId> = Vec::new();
    loop {
        let mut preds = vec![Predicate { column: "custom_role_id", cmp: Cmp::Eq, values: vec![id.into()] }];
        if let Some(last) = out.last() {
            preds.push(Predicate { column: "id", cmp: Cmp::Gt, values: vec![(*last).into()] });
        }
        let page = from_rows::<_, Member>(store::members::list(tx.ex(), spot_id, &preds, &[], 0, HOLDERS_BATCH).await?);
        let full = page.len() as i64 == HOLDERS_BATCH;
        out.extend(page.into_iter().map(|m| m.id));
        if !full {
            return Ok(out);
        }
    }
}

/// Deletes the role; its holders get `customRoleId: null` and are re-evaluated against
/// the smart groups whose rules read `customRoleId`, in the same transaction.
pub async fn delete_role(db: &Db, spot_id: SpotId, id: RoleId) -> Result<()> {
    store::retry_transient(|| delete_role_once(db, spot_id, id)).await
}

/// One attempt of [`delete_role`] (see [`store::retry_transient`]).
async fn delete_role_once(db: &Db, spot_id: SpotId, id: RoleId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::custom_roles::delete(tx.ex(), spot_id, id).await? {
        return Err(Error::NotFound(Entity::CustomRole));
    }
    let readers = super::groups::smart_groups_reading(&mut tx, spot_id, "\"customRoleId\"").await?;
    let affected = if readers.is_empty() { Vec::new() } else { holders(&mut tx, spot_id, id).await? };
    store::members::clear_custom_role(tx.ex(), spot_id, id, now_ms()).await?;
    let recompute = super::groups::refresh_readers(&mut tx, spot_id, &readers, affected).await?;
    tx.commit().await?;
    for group_id in recompute {
        super::groups::start_computation(db, spot_id, group_id);
    }
    Ok(())
}
