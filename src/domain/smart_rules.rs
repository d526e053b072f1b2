//! Smart-group rules (contract §4, §8 "Groups"): a two-level AND/OR tree of triggers
//! over member fields, validated on creation (errors name the path, e.g.
//! `rules.conditions[1].triggers[0].op`) and evaluated in Rust against one member at a
//! time, which is what keeps membership current incrementally: a member change
//! re-evaluates that member only. A full computation runs the same rules as SQL
//! ([`Rules::member_test`], rendered by `store::smart_sql`); `tests/smart_sql.rs`
//! checks on both stores that the two select the same members.
//!
//! `contains` folds the case of ASCII letters only, in Rust as in SQL: SQLite's
//! `lower()` folds nothing else, and an exact agreement between the evaluator and both
//! stores is worth more than folding `É` to `é` on some of them (emails are compared
//! lower-cased in full, as stored in `email_norm`).

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use super::filter::{date_ms, unix_to_ms, Op, MAX_LIST_VALUES};
use super::members::Member;
use super::properties::{self, PropertyDef};
use super::vocab::{MemberRole, MemberStatus, PropertyType};
use crate::domain::ids::PropertyId;
use crate::error::{Error, Result};
use crate::store::property_values::StoredValue;
use crate::store::smart_sql::{Compare, MemberTest, TextColumn, TimeColumn, ValueTest};

/// A member's custom-property values by property id (what property triggers read).
pub type PropertyValues = HashMap<PropertyId, Vec<StoredValue>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Junction {
    And,
    Or,
}

impl Junction {
    fn parse(v: &Value, path: &str) -> Result<Junction> {
        match v.as_str() {
            Some("AND") => Ok(Junction::And),
            Some("OR") => Ok(Junction::Or),
            _ => Err(Error::invalid(path, "must be \"AND\" or \"OR\"")),
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Junction::And => "AND",
            Junction::Or => "OR",
        }
    }
}

/// The member field a trigger reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Status,
    Role,
    Email,
    Firstname,
    Lastname,
    RegistrationDate,
    InvitationDate,
    CustomRoleId,
    /// `customProperties.<slug>`: a custom property of the spot and its type.
    Property {
        slug: String,
        id: PropertyId,
        kind: PropertyType,
    },
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "status" => Field::Status,
            "role" => Field::Role,
            "email" => Field::Email,
            "firstname" => Field::Firstname,
            "lastname" => Field::Lastname,
            "registrationDate" => Field::RegistrationDate,
            "invitationDate" => Field::InvitationDate,
            "customRoleId" => Field::CustomRoleId,
            _ => return None,
        })
    }
    fn as_str(&self) -> &'static str {
        match self {
            Field::Status => "status",
            Field::Role => "role",
            Field::Email => "email",
            Field::Firstname => "firstname",
            Field::Lastname => "lastname",
            Field::RegistrationDate => "registrationDate",
            Field::InvitationDate => "invitationDate",
            Field::CustomRoleId => "customRoleId",
            Field::Property { .. } => "customProperties",
        }
    }

    /// The field as written in rules.
    fn name(&self) -> String {
        match self {
            Field::Property { slug, .. } => format!("customProperties.{slug}"),
            other => other.as_str().to_string(),
        }
    }
    fn ops(&self) -> &'static [Op] {
        match self {
            Field::RegistrationDate | Field::InvitationDate => &[Op::Before, Op::After],
            Field::Property { kind, .. } => properties::ops_of(*kind),
            _ => &[Op::Eq, Op::Neq, Op::In, Op::NotIn, Op::Contains],
        }
    }
}

/// A trigger's operand, already typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Text(String),
    List(Vec<String>),
    /// Milliseconds since the epoch.
    Time(i64),
    Num(f64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    pub field: Field,
    pub op: Op,
    pub value: Operand,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub operator: Junction,
    pub triggers: Vec<Trigger>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub operator: Junction,
    pub conditions: Vec<Condition>,
}

pub const MAX_CONDITIONS: usize = 20;
pub const MAX_TRIGGERS: usize = 20;

impl Rules {
    /// Validates a rules document without custom properties; errors name the offending path.
    pub fn parse(v: &Value) -> Result<Rules> {
        Self::parse_with(v, &[], true)
    }

    /// Validates a rules document against the spot's custom properties. `strict` also
    /// checks select values against the options (on creation); stored rules are
    /// re-read leniently, so removing an option only stops it matching.
    pub fn parse_with(v: &Value, props: &[PropertyDef], strict: bool) -> Result<Rules> {
        let obj = v.as_object().ok_or_else(|| Error::invalid("rules", "must be an object"))?;
        let operator = Junction::parse(obj.get("operator").unwrap_or(&Value::Null), "rules.operator")?;
        let conds = obj
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid("rules.conditions", "must be an array"))?;
        if conds.is_empty() || conds.len() > MAX_CONDITIONS {
            return Err(Error::invalid("rules.conditions", format!("must hold 1 to {MAX_CONDITIONS} conditions")));
        }
        let mut conditions = Vec::with_capacity(conds.len());
        for (i, c) in conds.iter().enumerate() {
            let path = format!("rules.conditions[{i}]");
            let co = c.as_object().ok_or_else(|| Error::invalid(&path, "must be an object"))?;
            let operator = Junction::parse(co.get("operator").unwrap_or(&Value::Null), &format!("{path}.operator"))?;
            let trigs = co
                .get("triggers")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::invalid(format!("{path}.triggers"), "must be an array"))?;
            if trigs.is_empty() || trigs.len() > MAX_TRIGGERS {
                return Err(Error::invalid(
                    format!("{path}.triggers"),
                    format!("must hold 1 to {MAX_TRIGGERS} triggers"),
                ));
            }
            let triggers = trigs
                .iter()
                .enumerate()
                .map(|(j, t)| parse_trigger(t, &format!("{path}.triggers[{j}]"), props, strict))
                .collect::<Result<Vec<_>>>()?;
            conditions.push(Condition { operator, triggers });
        }
        Ok(Rules { operator, conditions })
    }

    /// The rules as stored and shown (`Time` operands back in Unix seconds).
    pub fn to_json(&self) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| {
                let triggers: Vec<Value> = c
                    .triggers
                    .iter()
                    .map(|t| {
                        let value = match &t.value {
                            Operand::Text(s) => Value::from(s.clone()),
                            Operand::List(l) => Value::from(l.clone()),
                            Operand::Time(ms) => Value::from(ms / 1000),
                            Operand::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(*n as i64),
                            Operand::Num(n) => Value::from(*n),
                            Operand::Bool(b) => Value::from(*b),
                        };
                        serde_json::json!({"field": t.field.name(), "op": t.op.as_str(), "value": value})
                    })
                    .collect();
                serde_json::json!({"operator": c.operator.as_str(), "triggers": triggers})
            })
            .collect();
        serde_json::json!({"operator": self.operator.as_str(), "conditions": conditions})
    }

    /// Whether `m` satisfies the rules (property triggers see no value).
    pub fn matches(&self, m: &Member) -> bool {
        self.matches_with(m, &PropertyValues::new())
    }

    /// Whether the rules reference any custom property.
    pub fn uses_properties(&self) -> bool {
        self.conditions.iter().flat_map(|c| &c.triggers).any(|t| matches!(t.field, Field::Property { .. }))
    }

    /// Whether `m`, with its custom-property `values`, satisfies the rules.
    pub fn matches_with(&self, m: &Member, values: &PropertyValues) -> bool {
        let cond = |c: &Condition| match c.operator {
            Junction::And => c.triggers.iter().all(|t| t.matches(m, values)),
            Junction::Or => c.triggers.iter().any(|t| t.matches(m, values)),
        };
        match self.operator {
            Junction::And => self.conditions.iter().all(cond),
            Junction::Or => self.conditions.iter().any(cond),
        }
    }
}

fn parse_trigger(t: &Value, path: &str, props: &[PropertyDef], strict: bool) -> Result<Trigger> {
    let o = t.as_object().ok_or_else(|| Error::invalid(path, "must be an object"))?;
    let field_name = o.get("field").and_then(Value::as_str).unwrap_or_default();
    let field = if let Some(slug) = field_name.strip_prefix("customProperties.") {
        let def = props.iter().find(|d| d.slug == slug).ok_or_else(|| {
            Error::invalid(format!("{path}.field"), format!("no custom property '{slug}' in this spot"))
        })?;
        return parse_property_trigger(o, path, def, strict);
    } else {
        Field::parse(field_name).ok_or_else(|| {
            Error::invalid(
                format!("{path}.field"),
                format!(
                    "unknown field '{field_name}' (allowed: status, role, email, firstname, lastname, \
                     registrationDate, invitationDate, customRoleId, customProperties.<slug>)"
                ),
            )
        })?
    };
    let op_name = o.get("op").and_then(Value::as_str).unwrap_or_default();
    let op = Op::parse(op_name).filter(|op| field.ops().contains(op)).ok_or_else(|| {
        let allowed: Vec<&str> = field.ops().iter().map(|o| o.as_str()).collect();
        Error::invalid(
            format!("{path}.op"),
            format!("operator '{op_name}' is not allowed on '{}' (allowed: {})", field.as_str(), allowed.join(", ")),
        )
    })?;
    let vpath = format!("{path}.value");
    let raw = o.get("value").unwrap_or(&Value::Null);
    let value = match op {
        Op::Before | Op::After => {
            let secs = raw.as_i64().ok_or_else(|| Error::invalid(&vpath, "must be a Unix timestamp in seconds"))?;
            let ms = match date_ms(secs) {
                Some(ms) => ms,
                // Rules stored before dates were bounded keep their (saturated) meaning.
                None if !strict => unix_to_ms(secs),
                None => return Err(Error::invalid(&vpath, "is out of range (years 0000 to 9999)")),
            };
            Operand::Time(ms)
        }
        Op::In | Op::NotIn => {
            let items = raw.as_array().ok_or_else(|| Error::invalid(&vpath, "must be an array of strings"))?;
            let list = items
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::invalid(&vpath, "must be an array of strings"))?;
            let list = distinct(list, &vpath, strict)?;
            for s in &list {
                check_value(&field, s, &vpath)?;
            }
            Operand::List(list)
        }
        _ => {
            let s = raw.as_str().ok_or_else(|| Error::invalid(&vpath, "must be a string"))?;
            if op != Op::Contains {
                check_value(&field, s, &vpath)?;
            }
            Operand::Text(s.to_string())
        }
    };
    Ok(Trigger { field, op, value })
}

fn parse_property_trigger(
    o: &serde_json::Map<String, Value>,
    path: &str,
    def: &PropertyDef,
    strict: bool,
) -> Result<Trigger> {
    let field = Field::Property { slug: def.slug.clone(), id: def.id, kind: def.kind };
    let op_name = o.get("op").and_then(Value::as_str).unwrap_or_default();
    let ops = properties::ops_of(def.kind);
    let op = Op::parse(op_name).filter(|op| ops.contains(op)).ok_or_else(|| {
        let allowed: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
        Error::invalid(
            format!("{path}.op"),
            format!("operator '{op_name}' is not allowed on a {} property (allowed: {})", def.kind, allowed.join(", ")),
        )
    })?;
    let vpath = format!("{path}.value");
    let raw = o.get("value").unwrap_or(&Value::Null);
    let option = |s: &str| -> Result<String> {
        let select = def.kind.is_select();
        if strict && select && !def.possible_values.0.iter().any(|p| p == s) {
            return Err(Error::invalid(&vpath, format!("'{s}' is not a possible value of '{}'", def.slug)));
        }
        if strict && def.kind == PropertyType::Date {
            properties::parse_date(&vpath, s)?;
        }
        Ok(s.to_string())
    };
    let value = match (def.kind, op) {
        (PropertyType::Number, _) => {
            Operand::Num(raw.as_f64().ok_or_else(|| Error::invalid(&vpath, "must be a number"))?)
        }
        (PropertyType::Boolean, _) => {
            Operand::Bool(raw.as_bool().ok_or_else(|| Error::invalid(&vpath, "must be true or false"))?)
        }
        (_, Op::In) => {
            let items = raw.as_array().ok_or_else(|| Error::invalid(&vpath, "must be an array of strings"))?;
            let list = items
                .iter()
                .map(|x| {
                    x.as_str().ok_or_else(|| Error::invalid(&vpath, "must be an array of strings")).and_then(option)
                })
                .collect::<Result<Vec<_>>>()?;
            Operand::List(distinct(list, &vpath, strict)?)
        }
        (_, _) => Operand::Text(option(raw.as_str().ok_or_else(|| Error::invalid(&vpath, "must be a string"))?)?),
    };
    Ok(Trigger { field, op, value })
}

/// An `in`/`notin` list without repeats: 1 to [`MAX_LIST_VALUES`] distinct values
/// (the cap is checked when rules are written; stored rules are re-read as they are).
fn distinct(list: Vec<String>, path: &str, strict: bool) -> Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for v in list {
        if seen.insert(v.clone()) {
            if strict && out.len() == MAX_LIST_VALUES {
                return Err(Error::invalid(path, format!("must list at most {MAX_LIST_VALUES} distinct values")));
            }
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(path, "must not be empty"));
    }
    Ok(out)
}

fn check_value(field: &Field, s: &str, path: &str) -> Result<()> {
    let ok = match field {
        Field::Status => s.parse::<MemberStatus>().is_ok(),
        Field::Role => s.parse::<MemberRole>().is_ok(),
        Field::CustomRoleId => Uuid::parse_str(s).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let expected = match field {
            Field::Status => format!("one of {}", MemberStatus::NAMES.join(", ")),
            Field::Role => format!("one of {}", MemberRole::NAMES.join(", ")),
            _ => "a UUID".to_string(),
        };
        Err(Error::invalid(path, format!("'{s}' is not {expected}")))
    }
}

impl Trigger {
    fn matches_property(&self, kind: PropertyType, rows: &[StoredValue]) -> bool {
        let texts = || rows.iter().filter_map(|r| r.text.as_deref());
        let num = rows.first().and_then(|r| r.num);
        match (&self.value, self.op) {
            (Operand::Num(v), op) => num.is_some_and(|n| match op {
                Op::Eq => n == *v,
                Op::Neq => n != *v,
                Op::Gt => n > *v,
                Op::Gte => n >= *v,
                Op::Lt => n < *v,
                Op::Lte => n <= *v,
                _ => false,
            }),
            (Operand::Bool(b), Op::Eq) => num.is_some_and(|n| (n != 0.0) == *b),
            (Operand::Text(v), Op::Eq) => texts().any(|t| t == v),
            (Operand::Text(v), Op::Neq) => texts().next().is_some_and(|t| t != v),
            (Operand::Text(v), Op::Before) => texts().next().is_some_and(|t| t < v.as_str()),
            (Operand::Text(v), Op::After) => texts().next().is_some_and(|t| t > v.as_str()),
            (Operand::Text(v), Op::Contains) if kind == PropertyType::MultipleSelect => texts().any(|t| t == v),
            (Operand::Text(v), Op::Contains) => texts().any(|t| contains_folded(t, v)),
            (Operand::List(l), Op::In) => texts().any(|t| l.iter().any(|v| v == t)),
            _ => false,
        }
    }

    fn matches(&self, m: &Member, values: &PropertyValues) -> bool {
        if let Field::Property { id, kind, .. } = &self.field {
            return self.matches_property(*kind, values.get(id).map(Vec::as_slice).unwrap_or(&[]));
        }
        let text: Option<String> = match self.field {
            Field::Status => Some(m.status.to_string()),
            Field::Role => Some(m.role.to_string()),
            Field::Email => m.email.as_deref().map(str::to_lowercase),
            Field::Firstname => Some(m.firstname.clone()),
            Field::Lastname => Some(m.lastname.clone()),
            Field::CustomRoleId => m.custom_role_id.map(|u| u.to_string()),
            Field::RegistrationDate | Field::InvitationDate | Field::Property { .. } => None,
        };
        let norm = |s: &str| {
            if self.field == Field::Email {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        match (&self.value, self.op) {
            (Operand::Time(t), op) => {
                let at = match self.field {
                    Field::RegistrationDate => m.registered_at,
                    _ => Some(m.invited_at),
                };
                match (at, op) {
                    (Some(at), Op::Before) => at < *t,
                    (Some(at), Op::After) => at > *t,
                    _ => false,
                }
            }
            (Operand::Text(v), Op::Eq) => text.is_some_and(|x| x == norm(v)),
            (Operand::Text(v), Op::Neq) => text.is_none_or(|x| x != norm(v)),
            (Operand::Text(v), Op::Contains) => text.is_some_and(|x| contains_folded(&x, v)),
            (Operand::List(l), Op::In) => text.is_some_and(|x| l.iter().any(|v| x == norm(v))),
            (Operand::List(l), Op::NotIn) => text.is_none_or(|x| l.iter().all(|v| x != norm(v))),
            _ => false,
        }
    }
}

/// Whether `haystack` contains `needle`, ASCII letters compared case-insensitively
/// (what both stores' SQL can do exactly, see `store::smart_sql`).
fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack.to_ascii_lowercase().contains(&needle.to_ascii_lowercase())
}

impl Rules {
    /// The rules as a store-level test over one member row, which a full computation
    /// runs in SQL; it selects exactly the members [`Rules::matches_with`] accepts.
    pub fn member_test(&self) -> MemberTest {
        let conditions = self
            .conditions
            .iter()
            .map(|c| {
                let triggers = c.triggers.iter().map(Trigger::member_test).collect();
                junction(c.operator, triggers)
            })
            .collect();
        junction(self.operator, conditions)
    }
}

fn junction(j: Junction, items: Vec<MemberTest>) -> MemberTest {
    match j {
        Junction::And => MemberTest::All(items),
        Junction::Or => MemberTest::Any(items),
    }
}

impl Trigger {
    /// This trigger as a store-level test (see [`Rules::member_test`]); each arm mirrors
    /// the matching arm of [`Trigger::matches`] / [`Trigger::matches_property`].
    fn member_test(&self) -> MemberTest {
        let column = match &self.field {
            Field::Property { id, kind, .. } => return self.property_test(*id, *kind),
            Field::RegistrationDate | Field::InvitationDate => {
                let column = if self.field == Field::RegistrationDate {
                    TimeColumn::RegisteredAt
                } else {
                    TimeColumn::InvitedAt
                };
                return match (&self.value, self.op) {
                    (Operand::Time(t), Op::Before) => MemberTest::Before(column, *t),
                    (Operand::Time(t), Op::After) => MemberTest::After(column, *t),
                    _ => MemberTest::Never,
                };
            }
            Field::Status => TextColumn::Status,
            Field::Role => TextColumn::Role,
            Field::Email => TextColumn::EmailNorm,
            Field::Firstname => TextColumn::Firstname,
            Field::Lastname => TextColumn::Lastname,
            Field::CustomRoleId => TextColumn::CustomRoleText,
        };
        // The stored email is compared lower-cased (`email_norm`), as `matches` does.
        let norm = |s: &str| if self.field == Field::Email { s.to_lowercase() } else { s.to_string() };
        match (&self.value, self.op) {
            (Operand::Text(v), Op::Eq) => MemberTest::TextEq(column, norm(v)),
            (Operand::Text(v), Op::Neq) => MemberTest::TextNeq(column, norm(v)),
            (Operand::Text(v), Op::Contains) => MemberTest::TextContains(column, v.clone()),
            (Operand::List(l), Op::In) => MemberTest::TextIn(column, l.iter().map(|v| norm(v)).collect()),
            (Operand::List(l), Op::NotIn) => MemberTest::TextNotIn(column, l.iter().map(|v| norm(v)).collect()),
            _ => MemberTest::Never,
        }
    }

    fn property_test(&self, id: PropertyId, kind: PropertyType) -> MemberTest {
        let compare = |op: Op| match op {
            Op::Eq => Some(Compare::Eq),
            Op::Neq => Some(Compare::Neq),
            Op::Gt => Some(Compare::Gt),
            Op::Gte => Some(Compare::Gte),
            Op::Lt => Some(Compare::Lt),
            Op::Lte => Some(Compare::Lte),
            _ => None,
        };
        let test = match (&self.value, self.op) {
            (Operand::Num(v), op) => match compare(op) {
                Some(c) => ValueTest::FirstNum(c, *v),
                None => return MemberTest::Never,
            },
            (Operand::Bool(b), Op::Eq) => ValueTest::FirstBool(*b),
            (Operand::Text(v), Op::Eq) => ValueTest::AnyTextIn(vec![v.clone()]),
            (Operand::Text(v), Op::Neq) => ValueTest::FirstText(Compare::Neq, v.clone()),
            (Operand::Text(v), Op::Before) => ValueTest::FirstText(Compare::Lt, v.clone()),
            (Operand::Text(v), Op::After) => ValueTest::FirstText(Compare::Gt, v.clone()),
            (Operand::Text(v), Op::Contains) if kind == PropertyType::MultipleSelect => {
                ValueTest::AnyTextIn(vec![v.clone()])
            }
            (Operand::Text(v), Op::Contains) => ValueTest::AnyTextContains(v.clone()),
            (Operand::List(l), Op::In) => ValueTest::AnyTextIn(l.clone()),
            _ => return MemberTest::Never,
        };
        MemberTest::Property(id, test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member() -> Member {
        let mut m = Member::new_invited(crate::domain::ids::SpotId(Uuid::nil()), Some("Ada@Example.com".into()), None);
        m.firstname = "Ada".into();
        m.invited_at = 1_700_000_000_000;
        m
    }

    fn err(v: Value) -> String {
        Rules::parse(&v).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn and_or_tree_evaluates() {
        let r = Rules::parse(&json!({"operator": "AND", "conditions": [
            {"operator": "OR", "triggers": [
                {"field": "status", "op": "eq", "value": "Accepted"},
                {"field": "email", "op": "contains", "value": "@example.com"}]},
            {"operator": "AND", "triggers": [{"field": "role", "op": "in", "value": ["Member", "Admin"]}]}
        ]}))
        .expect("rules parse");
        let mut m = member();
        assert!(r.matches(&m));
        m.email = Some("ada@other.org".into());
        assert!(!r.matches(&m));
        m.set_status(MemberStatus::Accepted, 1);
        assert!(r.matches(&m));
    }

    #[test]
    fn dates_and_negations() {
        let r = Rules::parse(&json!({"operator": "OR", "conditions": [{"operator": "AND", "triggers": [
            {"field": "invitationDate", "op": "after", "value": 1_600_000_000},
            {"field": "customRoleId", "op": "neq", "value": "01930000-0000-7000-8000-000000000000"},
            {"field": "firstname", "op": "notin", "value": ["Bob"]}
        ]}]}))
        .expect("rules parse");
        let mut m = member();
        assert!(r.matches(&m));
        m.firstname = "Bob".into();
        assert!(!r.matches(&m));
    }

    #[test]
    fn email_comparison_ignores_case() {
        let r = Rules::parse(&json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
            {"field": "email", "op": "eq", "value": "ADA@example.COM"}]}]}))
        .expect("rules parse");
        assert!(r.matches(&member()));
    }

    #[test]
    fn errors_name_the_path() {
        let base = |t: Value| {
            json!({"operator": "AND", "conditions": [
            {"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]},
            {"operator": "OR", "triggers": [t]}]})
        };
        assert!(err(base(json!({"field": "status", "op": "gt", "value": "x"})))
            .starts_with("rules.conditions[1].triggers[0].op"));
        assert!(err(base(json!({"field": "shoeSize", "op": "eq", "value": "x"})))
            .starts_with("rules.conditions[1].triggers[0].field"));
        assert!(err(base(json!({"field": "status", "op": "eq", "value": "Sleeping"})))
            .starts_with("rules.conditions[1].triggers[0].value"));
        assert!(err(base(json!({"field": "registrationDate", "op": "before", "value": "yesterday"})))
            .starts_with("rules.conditions[1].triggers[0].value"));
        assert!(err(base(json!({"field": "role", "op": "in", "value": "Admin"})))
            .starts_with("rules.conditions[1].triggers[0].value"));
        assert!(err(json!({"operator": "XOR", "conditions": []})).starts_with("rules.operator"));
        assert!(err(json!({"operator": "AND", "conditions": []})).starts_with("rules.conditions"));
        assert!(err(json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": []}]}))
            .starts_with("rules.conditions[0].triggers"));
    }

    #[test]
    fn json_round_trip_keeps_seconds() {
        let v = json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [
            {"field": "registrationDate", "op": "before", "value": 1_700_000_000}]}]});
        assert_eq!(Rules::parse(&v).ok().map(|r| r.to_json()), Some(v));
    }

    #[test]
    fn list_values_are_deduplicated_and_capped() {
        let rule = |values: Value| {
            json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
                {"field": "firstname", "op": "notin", "value": values}]}]})
        };
        let r = Rules::parse(&rule(json!(["Bob", "Ann", "Bob"]))).expect("rules parse");
        assert_eq!(r.conditions[0].triggers[0].value, Operand::List(vec!["Bob".into(), "Ann".into()]));
        let hundred: Vec<String> = (0..MAX_LIST_VALUES).map(|i| format!("n{i}")).collect();
        let mut twice = hundred.clone();
        twice.extend(hundred.clone());
        assert!(Rules::parse(&rule(json!(twice))).is_ok());
        let mut over = hundred;
        over.push("one more".into());
        let e = err(rule(json!(over.clone())));
        assert!(e.starts_with("rules.conditions[0].triggers[0].value") && e.contains("100"), "{e}");
        // Rules stored before the cap still read (they are re-read leniently).
        assert!(Rules::parse_with(&rule(json!(over)), &[], false).is_ok());
    }

    #[test]
    fn extreme_dates_are_refused() {
        for v in [json!(i64::MIN), json!(i64::MAX), json!(-9_223_372_036_854_775_807_i64), json!(253_402_300_800_i64)] {
            let e = err(json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
                {"field": "registrationDate", "op": "after", "value": v}]}]}));
            assert!(e.starts_with("rules.conditions[0].triggers[0].value") && e.contains("range"), "{v} → {e}");
        }
        let e = err(json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
            {"field": "invitationDate", "op": "before", "value": u64::MAX}]}]}));
        assert!(e.starts_with("rules.conditions[0].triggers[0].value"), "{e}");
    }
}
