//! Custom member properties (`meltingspot-api.md` §3.3, §5.5; contract §4, §8 "Custom
//! properties"): definitions managed through the openspot extension, typed values per
//! member, and filters on them.
//!
//! Values are stored one row per value in `member_property_values` (text or number
//! column by type; a MultipleSelect keeps one row per option), indexed by
//! (spot, property, value), so `customProperties.<slug>[op]=v` is an index range that
//! yields member ids.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::ids::{MemberId, PropertyId, SpotId};

use super::filter::{Op, RawFilter};
use super::members::Member;
use super::now_ms;
use super::vocab::PropertyType;
use crate::error::{Entity, Error, Result};
use crate::store::members::PropertyFilter;
use crate::store::properties::PropertyRow;
use crate::store::property_values::StoredValue;
use crate::store::sql::{Bind, Predicate};
use crate::store::{self, Db, Tx};

pub const MAX_OPTIONS: usize = 200;

/// Select options as stored (a JSON array in a text column).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options(pub Vec<String>);

impl Options {
    pub fn to_json(&self) -> String {
        Value::from(self.0.clone()).to_string()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PropertyDef {
    pub spot_id: SpotId,
    pub id: PropertyId,
    pub slug: String,
    pub label: String,
    pub description: Option<String>,
    pub kind: PropertyType,
    pub possible_values: Options,
}

impl TryFrom<PropertyRow> for PropertyDef {
    type Error = Error;
    /// Fails only on a corrupt `possible_values` column (500).
    fn try_from(r: PropertyRow) -> Result<Self> {
        let possible_values = serde_json::from_str(&r.possible_values).map(Options).map_err(anyhow::Error::new)?;
        Ok(PropertyDef {
            spot_id: r.spot_id,
            id: r.id,
            slug: r.slug,
            label: r.label,
            description: r.description,
            kind: r.kind,
            possible_values,
        })
    }
}

impl From<&PropertyDef> for PropertyRow {
    fn from(d: &PropertyDef) -> Self {
        PropertyRow {
            spot_id: d.spot_id,
            id: d.id,
            slug: d.slug.clone(),
            label: d.label.clone(),
            description: d.description.clone(),
            kind: d.kind,
            possible_values: d.possible_values.to_json(),
        }
    }
}

/// The domain structs of stored definitions.
fn defs(rows: Vec<PropertyRow>) -> Result<Vec<PropertyDef>> {
    rows.into_iter().map(PropertyDef::try_from).collect()
}

/// Every property of the spot, in creation order.
pub async fn all_in(ex: store::Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyDef>> {
    defs(store::properties::list(ex, spot_id).await?)
}

/// [`all_in`], share-locked until the transaction ends: what a value writer reads, so
/// a property cannot be deleted (or lose an option) under it.
pub async fn all_for_share(ex: store::Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyDef>> {
    defs(store::properties::list_for_share(ex, spot_id).await?)
}

/// The property with `slug`, if any; `for_update` locks it until the transaction ends.
async fn by_slug(ex: store::Ex<'_>, spot_id: SpotId, slug: &str, for_update: bool) -> Result<Option<PropertyDef>> {
    let row = if for_update {
        store::properties::get_by_slug_for_update(ex, spot_id, slug).await?
    } else {
        store::properties::get_by_slug(ex, spot_id, slug).await?
    };
    row.map(PropertyDef::try_from).transpose()
}

impl PropertyDef {
    fn is_select(&self) -> bool {
        self.kind.is_select()
    }
}

/// A property with a member's value (null when unset).
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyValue {
    pub def: PropertyDef,
    pub value: Value,
}

fn valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// `Company size (FTE)` → `company-size-fte`.
pub fn slug_from_label(label: &str) -> String {
    let mut out = String::new();
    for ch in label.trim().to_lowercase().chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(64).collect();
    if out.is_empty() {
        "property".into()
    } else {
        out
    }
}

fn check_options(kind: PropertyType, options: Option<Vec<String>>) -> Result<Options> {
    let select = kind.is_select();
    let options = options.unwrap_or_default();
    if !select {
        if !options.is_empty() {
            return Err(Error::invalid("possibleValues", format!("a {kind} property has no possible values")));
        }
        return Ok(Options::default());
    }
    if options.is_empty() {
        return Err(Error::invalid("possibleValues", "a select property needs at least one value"));
    }
    if options.len() > MAX_OPTIONS {
        return Err(Error::invalid("possibleValues", format!("at most {MAX_OPTIONS} values")));
    }
    let mut seen = HashSet::new();
    for (i, o) in options.iter().enumerate() {
        if o.trim().is_empty() {
            return Err(Error::invalid(format!("possibleValues[{i}]"), "must not be empty"));
        }
        if !seen.insert(o.as_str()) {
            return Err(Error::invalid(format!("possibleValues[{i}]"), format!("'{o}' is repeated")));
        }
    }
    Ok(Options(options))
}

/// What a client sends to create a property.
#[derive(Clone, Debug, Default)]
pub struct NewProperty {
    pub slug: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub kind: Option<String>,
    pub possible_values: Option<Vec<String>>,
}

pub async fn list_properties(db: &Db, spot_id: SpotId) -> Result<Vec<PropertyDef>> {
    let mut c = db.conn().await?;
    all_in(c.ex(), spot_id).await
}

pub async fn get_property(db: &Db, spot_id: SpotId, slug: &str) -> Result<PropertyDef> {
    let mut c = db.conn().await?;
    by_slug(c.ex(), spot_id, slug, false).await?.ok_or(Error::NotFound(Entity::CustomProperty))
}

/// `POST /v1/customProperties`: the slug is given or derived from the label (made
/// unique with `-2`, `-3`…); a given slug already in use → 409.
pub async fn create_property(db: &Db, spot_id: SpotId, n: NewProperty) -> Result<PropertyDef> {
    let label = n.label.as_deref().map(str::trim).unwrap_or_default().to_string();
    if label.is_empty() {
        return Err(Error::invalid("label", "is required"));
    }
    let kind = n
        .kind
        .ok_or_else(|| Error::invalid("type", format!("is required (one of {})", PropertyType::NAMES.join(", "))))?;
    let kind: PropertyType = super::vocab::parse("type", &kind)?;
    let options = check_options(kind, n.possible_values)?;
    if let Some(s) = &n.slug {
        if !valid_slug(s) {
            return Err(Error::invalid("slug", "must match ^[a-z0-9][a-z0-9_-]{0,63}$"));
        }
    }
    let mut tx = db.begin().await?;
    let slug = match n.slug {
        Some(s) => {
            if by_slug(tx.ex(), spot_id, &s, false).await?.is_some() {
                return Err(Error::Conflict(format!("A custom property with slug '{s}' already exists")));
            }
            s
        }
        None => {
            let base = slug_from_label(&label);
            let mut candidate = base.clone();
            let mut i = 2;
            while by_slug(tx.ex(), spot_id, &candidate, false).await?.is_some() {
                candidate = format!("{}-{i}", base.chars().take(60).collect::<String>());
                i += 1;
            }
            candidate
        }
    };
    let def = PropertyDef {
        spot_id,
        id: PropertyId::generate(),
        slug,
        label,
        description: n.description,
        kind,
        possible_values: options,
    };
    store::properties::insert(tx.ex(), &(&def).into(), now_ms()).await?;
    tx.commit().await?;
    Ok(def)
}

/// A change of definition: label, description, options (with renames). Slug and type are fixed.
#[derive(Clone, Debug, Default)]
pub struct PropertyPatch {
    pub slug: Option<String>,
    pub kind: Option<String>,
    pub label: Option<String>,
    pub description: Option<Option<String>>,
    pub possible_values: Option<Vec<String>>,
    /// Options renamed (old → new); stored values follow.
    pub renamed_values: HashMap<String, String>,
}

/// Checks `renamedValues` against the current options and returns the renames that
/// change something, sorted by source. The renames apply at once (`{a→b, b→a}` swaps
/// the two), and must leave the options distinct: each source is a current option, no
/// two sources share a target, and a target that is a current option must itself be
/// renamed away in the same request (otherwise two options would merge into one).
fn check_renames(options: &[String], renamed: &HashMap<String, String>) -> Result<Vec<(String, String)>> {
    let mut renames: Vec<(String, String)> =
        renamed.iter().filter(|(from, to)| from != to).map(|(f, t)| (f.clone(), t.clone())).collect();
    renames.sort();
    let mut targets: HashMap<&str, &str> = HashMap::new();
    for (from, to) in &renames {
        if !options.contains(from) {
            return Err(Error::invalid("renamedValues", format!("'{from}' is not a possible value")));
        }
        if to.trim().is_empty() {
            return Err(Error::invalid("renamedValues", format!("'{from}' cannot be renamed to an empty value")));
        }
        if let Some(other) = targets.insert(to.as_str(), from.as_str()) {
            return Err(Error::invalid(
                "renamedValues",
                format!("'{other}' and '{from}' are both renamed to '{to}'; options cannot be merged"),
            ));
        }
    }
    for (from, to) in &renames {
        if options.contains(to) && !renames.iter().any(|(f, _)| f == to) {
            return Err(Error::invalid(
                "renamedValues",
                format!(
                    "'{from}' cannot be renamed to '{to}': '{to}' is already a possible value \
                     (rename it too, e.g. to swap them, or remove it first)"
                ),
            ));
        }
    }
    Ok(renames)
}

/// `PUT /v1/customProperties/{slug}`: removed options take their stored values with them
/// (same transaction); renamed options rename them (see [`check_renames`]). The members
/// whose values changed are re-evaluated against the smart groups reading the property.
pub async fn update_property(db: &Db, spot_id: SpotId, slug: &str, p: PropertyPatch) -> Result<PropertyDef> {
    store::retry_transient(|| update_property_once(db, spot_id, slug, p.clone())).await
}

/// One attempt of [`update_property`] (see [`store::retry_transient`]).
async fn update_property_once(db: &Db, spot_id: SpotId, slug: &str, p: PropertyPatch) -> Result<PropertyDef> {
    let mut tx = db.begin().await?;
    let mut def = by_slug(tx.ex(), spot_id, slug, true).await?.ok_or(Error::NotFound(Entity::CustomProperty))?;
    if p.slug.as_deref().is_some_and(|s| s != def.slug) {
        return Err(Error::invalid("slug", "cannot change"));
    }
    if p.kind.as_deref().is_some_and(|k| k != def.kind.as_str()) {
        return Err(Error::invalid("type", "cannot change"));
    }
    if let Some(l) = p.label {
        let l = l.trim().to_string();
        if l.is_empty() {
            return Err(Error::invalid("label", "must not be empty"));
        }
        def.label = l;
    }
    if let Some(d) = p.description {
        def.description = d;
    }
    if !p.renamed_values.is_empty() && !def.is_select() {
        return Err(Error::invalid("renamedValues", "only select properties have values to rename"));
    }
    let renames = check_renames(&def.possible_values.0, &p.renamed_values)?;
    let current: Vec<String> = def
        .possible_values
        .0
        .iter()
        .map(|o| renames.iter().find(|(from, _)| from == o).map_or_else(|| o.clone(), |(_, to)| to.clone()))
        .collect();
    let next = match p.possible_values {
        Some(v) => check_options(def.kind, Some(v))?,
        None => check_options(def.kind, (!current.is_empty()).then_some(current.clone()))?,
    };
    let removed: Vec<String> = current.into_iter().filter(|o| !next.0.contains(o)).collect();
    let mut changed = store::property_values::rename_options(tx.ex(), spot_id, def.id, &renames).await?;
    changed.extend(store::property_values::delete_options(tx.ex(), spot_id, def.id, &removed).await?);
    def.possible_values = next;
    store::properties::update(tx.ex(), &(&def).into()).await?;
    let recompute = if changed.is_empty() {
        Vec::new()
    } else {
        let needle = format!("\"customProperties.{}\"", def.slug);
        let readers = super::groups::smart_groups_reading(&mut tx, spot_id, &needle).await?;
        super::groups::refresh_readers(&mut tx, spot_id, &readers, changed).await?
    };
    tx.commit().await?;
    for group_id in recompute {
        super::groups::start_computation(db, spot_id, group_id);
    }
    Ok(def)
}

/// Deletes a property and every stored value of it, in one transaction; refused (409)
/// while a smart group's rules read it.
pub async fn delete_property(db: &Db, spot_id: SpotId, slug: &str) -> Result<()> {
    store::retry_transient(|| delete_property_once(db, spot_id, slug)).await
}

/// One attempt of [`delete_property`] (see [`store::retry_transient`]).
async fn delete_property_once(db: &Db, spot_id: SpotId, slug: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    let def = by_slug(tx.ex(), spot_id, slug, true).await?.ok_or(Error::NotFound(Entity::CustomProperty))?;
    let needle = format!("\"customProperties.{}\"", def.slug);
    let users: Vec<String> = store::smart_groups::list(tx.ex(), spot_id)
        .await?
        .into_iter()
        .filter(|(_, rules)| rules.contains(&needle))
        .map(|(id, _)| id.to_string())
        .collect();
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "Custom property '{}' is read by the rules of smart group(s) {}; delete those groups first",
            def.slug,
            users.join(", ")
        )));
    }
    store::property_values::delete_all(tx.ex(), spot_id, def.id).await?;
    store::properties::delete(tx.ex(), spot_id, def.id).await?;
    tx.commit().await?;
    Ok(())
}

/// A Date value or operand: exactly `YYYY-MM-DD` (four-digit year, no sign: the text
/// is stored and compared as is, so `+2024-01-01` or `-0001-01-01` would sort wrong),
/// and a real calendar day.
pub fn parse_date(field: &str, s: &str) -> Result<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !shaped || time::Date::parse(s, &fmt).is_err() {
        return Err(Error::invalid(field, "must be a date YYYY-MM-DD"));
    }
    Ok(s.to_string())
}

/// Validates `value` against the property's type; `field` names it in errors.
pub fn to_stored(def: &PropertyDef, value: &Value, field: &str) -> Result<Vec<StoredValue>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let text = |t: String| StoredValue { text: Some(t), num: None };
    let expect = |what: &str| Error::invalid(field, format!("a {} property takes {what}", def.kind));
    let option = |s: &str| -> Result<String> {
        if def.possible_values.0.iter().any(|o| o == s) {
            Ok(s.to_string())
        } else {
            Err(Error::invalid(field, format!("'{s}' is not one of {}", def.possible_values.0.join(", "))))
        }
    };
    Ok(match def.kind {
        PropertyType::Text => vec![text(value.as_str().ok_or_else(|| expect("a string"))?.to_string())],
        PropertyType::Number => {
            let n = value.as_f64().filter(|n| n.is_finite()).ok_or_else(|| expect("a number"))?;
            vec![StoredValue { text: None, num: Some(n) }]
        }
        PropertyType::Boolean => {
            let b = value.as_bool().ok_or_else(|| expect("true or false"))?;
            vec![StoredValue { text: None, num: Some(if b { 1.0 } else { 0.0 }) }]
        }
        PropertyType::Date => {
            vec![text(parse_date(field, value.as_str().ok_or_else(|| expect("a date YYYY-MM-DD"))?)?)]
        }
        PropertyType::SingleSelect => {
            vec![text(option(value.as_str().ok_or_else(|| expect("one of its possible values"))?)?)]
        }
        PropertyType::MultipleSelect => {
            let items = value.as_array().ok_or_else(|| expect("an array of its possible values"))?;
            let mut out: Vec<StoredValue> = Vec::new();
            for v in items {
                let s = option(v.as_str().ok_or_else(|| expect("an array of its possible values"))?)?;
                if !out.iter().any(|o| o.text.as_deref() == Some(s.as_str())) {
                    out.push(text(s));
                }
            }
            out
        }
    })
}

/// The wire value of stored rows.
pub fn from_stored(def: &PropertyDef, rows: &[StoredValue]) -> Value {
    let Some(first) = rows.first() else { return Value::Null };
    match def.kind {
        PropertyType::Number => match first.num {
            Some(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
            Some(n) => Value::from(n),
            None => Value::Null,
        },
        PropertyType::Boolean => Value::from(first.num.is_some_and(|n| n != 0.0)),
        PropertyType::MultipleSelect => Value::from(rows.iter().filter_map(|r| r.text.clone()).collect::<Vec<_>>()),
        _ => first.text.clone().map(Value::from).unwrap_or(Value::Null),
    }
}

async fn values_of(
    tx_or_conn: crate::store::Ex<'_>,
    spot_id: SpotId,
    member_id: MemberId,
) -> Result<HashMap<PropertyId, Vec<StoredValue>>> {
    let rows = store::property_values::list_of_member(tx_or_conn, spot_id, member_id).await?;
    let mut out: HashMap<PropertyId, Vec<StoredValue>> = HashMap::new();
    for (pid, _, text, num) in rows {
        out.entry(pid).or_default().push(StoredValue { text, num });
    }
    Ok(out)
}

/// Every property of the spot with the member's value (null when unset), paginated.
pub async fn member_values(
    db: &Db,
    spot_id: SpotId,
    member_id: MemberId,
    offset: usize,
    limit: usize,
) -> Result<(Vec<PropertyValue>, i64)> {
    let mut c = db.conn().await?;
    store::members::get(c.ex(), spot_id, member_id)
        .await?
        .map(Member::from)
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    let defs = all_in(c.ex(), spot_id).await?;
    let values = values_of(c.ex(), spot_id, member_id).await?;
    let total = defs.len() as i64;
    let items = defs
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|def| {
            let value = from_stored(&def, values.get(&def.id).map(Vec::as_slice).unwrap_or(&[]));
            PropertyValue { def, value }
        })
        .collect();
    Ok((items, total))
}

/// Sets values (all-or-nothing) inside the caller's transaction; each item is
/// (slug, value, field name for errors).
pub async fn set_values_in(
    tx: &mut Tx,
    spot_id: SpotId,
    member_id: MemberId,
    items: &[(String, Value, String)],
) -> Result<Vec<PropertyValue>> {
    // The member's lock first: value writers of one member queue here, so each reads
    // (and re-evaluates smart groups on) what the previous one committed, and writes
    // back a member row read under the lock, never a stale copy.
    let member = store::members::get_for_update(tx.ex(), spot_id, member_id)
        .await?
        .map(Member::from)
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    let defs = all_for_share(tx.ex(), spot_id).await?;
    let mut prepared = Vec::with_capacity(items.len());
    for (slug, value, field) in items {
        let def = defs.iter().find(|d| &d.slug == slug).ok_or(Error::NotFound(Entity::CustomProperty))?;
        prepared.push((def.clone(), to_stored(def, value, field)?));
    }
    let mut out = Vec::with_capacity(prepared.len());
    for (def, rows) in prepared {
        store::property_values::replace(tx.ex(), spot_id, def.id, member_id, &rows).await?;
        let value = from_stored(&def, &rows);
        out.push(PropertyValue { def, value });
    }
    let mut m = member;
    m.updated_at = now_ms();
    store::members::update(tx.ex(), &(&m).into()).await?;
    super::events::emit(tx, spot_id, super::events::Event::MemberUpdated(std::slice::from_ref(&m))).await?;
    super::groups::refresh_smart_memberships(tx, &m).await?;
    Ok(out)
}

/// Gives the spot's members among `ids` the same `value` of property `slug` inside the
/// caller's transaction (a chunk of a bulk action), with what [`set_values_in`] does
/// for each (`updatedAt`, a `member.updated` event, smart groups re-evaluated), but
/// set-based: the members are read under their row locks in one statement, their
/// values replaced in one delete and batched inserts, and only their `updated_at`
/// written (a full member row per member rewrote each of its dozen indexes on SQLite).
/// Returns how many of `ids` are not members of the spot; a value the property's type
/// refuses is a 400 naming `field`, before anything is written.
pub async fn set_value_of_many_in(
    tx: &mut Tx,
    spot_id: SpotId,
    ids: &[MemberId],
    slug: &str,
    value: &Value,
    field: &str,
) -> Result<usize> {
    let rows = store::members::get_many_for_update(tx.ex(), spot_id, ids).await?;
    let missing = ids.len() - rows.len();
    let defs = all_for_share(tx.ex(), spot_id).await?;
    let def = defs.iter().find(|d| d.slug == slug).ok_or(Error::NotFound(Entity::CustomProperty))?;
    let stored = to_stored(def, value, field)?;
    if rows.is_empty() {
        return Ok(missing);
    }
    let now = now_ms();
    let members: Vec<Member> = rows
        .into_iter()
        .map(|row| {
            let mut m = Member::from(row);
            m.updated_at = now;
            m
        })
        .collect();
    let member_ids: Vec<MemberId> = members.iter().map(|m| m.id).collect();
    store::property_values::replace_many(tx.ex(), spot_id, def.id, &member_ids, &stored).await?;
    store::members::touch_many(tx.ex(), spot_id, &member_ids, now).await?;
    super::events::emit(tx, spot_id, super::events::Event::MemberUpdated(&members)).await?;
    super::groups::refresh_smart_memberships_of(tx, &members).await?;
    Ok(missing)
}

/// `PUT …/customPropertiesValues/{slug}` and `~bulkUpsert` (all-or-nothing).
pub async fn set_values(
    db: &Db,
    spot_id: SpotId,
    member_id: MemberId,
    items: &[(String, Value, String)],
) -> Result<Vec<PropertyValue>> {
    store::retry_transient(|| set_values_once(db, spot_id, member_id, items)).await
}

/// One attempt of [`set_values`] (see [`store::retry_transient`]).
async fn set_values_once(
    db: &Db,
    spot_id: SpotId,
    member_id: MemberId,
    items: &[(String, Value, String)],
) -> Result<Vec<PropertyValue>> {
    let mut tx = db.begin().await?;
    let out = set_values_in(&mut tx, spot_id, member_id, items).await?;
    tx.commit().await?;
    Ok(out)
}

/// The filter operators that apply to a property of type `kind`.
pub fn ops_of(kind: PropertyType) -> &'static [Op] {
    match kind {
        PropertyType::Text => &[Op::Eq, Op::Neq, Op::In, Op::Contains],
        PropertyType::Number => &[Op::Eq, Op::Neq, Op::Gt, Op::Gte, Op::Lt, Op::Lte],
        PropertyType::Boolean => &[Op::Eq],
        PropertyType::Date => &[Op::Eq, Op::Before, Op::After],
        PropertyType::SingleSelect => &[Op::Eq, Op::Neq, Op::In],
        PropertyType::MultipleSelect => &[Op::Contains, Op::In],
    }
}

/// Turns `customProperties.<slug>[op]=v` filters into property filters.
pub async fn property_filters(db: &Db, spot_id: SpotId, raw: &[&RawFilter]) -> Result<Vec<PropertyFilter>> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let defs = list_properties(db, spot_id).await?;
    raw.iter()
        .map(|f| {
            let slug = f.field.trim_start_matches("customProperties.");
            let def = defs
                .iter()
                .find(|d| d.slug == slug)
                .ok_or_else(|| Error::invalid(&f.param, format!("no custom property '{slug}' in this spot")))?;
            let ops = ops_of(def.kind);
            if !ops.contains(&f.op) {
                let allowed: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
                return Err(Error::invalid(
                    &f.param,
                    format!(
                        "operator '{}' is not allowed on a {} property (allowed: {})",
                        f.op.as_str(),
                        def.kind,
                        allowed.join(", ")
                    ),
                ));
            }
            let numeric = def.kind.is_numeric();
            let values = f
                .values
                .iter()
                .map(|v| -> Result<Bind> {
                    Ok(match def.kind {
                        PropertyType::Number => Bind::F64(
                            v.trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|n| n.is_finite())
                                .ok_or_else(|| Error::invalid(&f.param, "must be a number"))?,
                        ),
                        PropertyType::Boolean => match v.trim() {
                            "true" => Bind::F64(1.0),
                            "false" => Bind::F64(0.0),
                            _ => return Err(Error::invalid(&f.param, "must be true or false")),
                        },
                        PropertyType::Date => Bind::Text(parse_date(&f.param, v.trim())?),
                        PropertyType::SingleSelect | PropertyType::MultipleSelect => {
                            if !def.possible_values.0.iter().any(|o| o == v) {
                                return Err(Error::invalid(&f.param, format!("'{v}' is not a possible value")));
                            }
                            Bind::Text(v.clone())
                        }
                        PropertyType::Text => Bind::Text(v.clone()),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if values.is_empty() {
                return Err(Error::invalid(&f.param, "needs a value"));
            }
            // "Has this option" is equality on one of the member's option rows.
            let op = if def.kind == PropertyType::MultipleSelect && f.op == Op::Contains { Op::Eq } else { f.op };
            let column = if numeric { "value_num" } else { "value_text" };
            Ok(PropertyFilter { property_id: def.id, predicate: Predicate { column, cmp: op.cmp(), values } })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn slugs_derive_from_labels() {
        assert_eq!(slug_from_label("Company size (FTE)"), "company-size-fte");
        assert_eq!(slug_from_label("  Plan  "), "plan");
        assert_eq!(slug_from_label("!!!"), "property");
        assert!(valid_slug("plan_2024-x"));
        assert!(!valid_slug("-plan"));
        assert!(!valid_slug("Plan"));
    }

    fn def(kind: &str, opts: &[&str]) -> PropertyDef {
        PropertyDef {
            spot_id: SpotId(Uuid::nil()),
            id: PropertyId(Uuid::nil()),
            slug: "p".into(),
            label: "P".into(),
            description: None,
            kind: kind.parse().unwrap(),
            possible_values: Options(opts.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn values_are_checked_against_the_type() {
        use serde_json::json;
        let ok = |d: &PropertyDef, v: Value| to_stored(d, &v, "value").map(|r| from_stored(d, &r)).ok();
        assert_eq!(ok(&def("Text", &[]), json!("x")), Some(json!("x")));
        assert_eq!(ok(&def("Text", &[]), json!(5)), None);
        assert_eq!(ok(&def("Number", &[]), json!(5)), Some(json!(5)));
        assert_eq!(ok(&def("Number", &[]), json!(2.5)), Some(json!(2.5)));
        assert_eq!(ok(&def("Number", &[]), json!("5")), None);
        assert_eq!(ok(&def("Boolean", &[]), json!(true)), Some(json!(true)));
        assert_eq!(ok(&def("Boolean", &[]), json!("true")), None);
        assert_eq!(ok(&def("Date", &[]), json!("2024-02-29")), Some(json!("2024-02-29")));
        assert_eq!(ok(&def("Date", &[]), json!("2023-02-29")), None);
        assert_eq!(ok(&def("SingleSelect", &["a", "b"]), json!("b")), Some(json!("b")));
        assert_eq!(ok(&def("SingleSelect", &["a", "b"]), json!("c")), None);
        assert_eq!(ok(&def("MultipleSelect", &["a", "b"]), json!(["b", "a", "b"])), Some(json!(["b", "a"])));
        assert_eq!(ok(&def("MultipleSelect", &["a", "b"]), json!("a")), None);
        assert_eq!(ok(&def("Text", &[]), Value::Null), Some(Value::Null));
    }

    #[test]
    fn dates_are_exactly_four_digit_years() {
        let date = def("Date", &[]);
        for good in ["0000-01-01", "9999-12-31", "2024-02-29"] {
            assert!(to_stored(&date, &Value::from(good), "value").is_ok(), "{good}");
        }
        let long = "9".repeat(10_000);
        for bad in ["+2024-01-01", "-2024-01-01", "99999-01-01", "+10000-01-01", "2024-1-01", " 2024-01-01", &long] {
            let err = to_stored(&date, &Value::from(bad), "value").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.starts_with("value"), "{bad}: {err}");
        }
    }
}
