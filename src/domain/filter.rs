//! List queries: pagination and the LHS-bracket filters of the MeltingSpot dialect
//! (contract §3, `meltingspot-api.md` §1.3–1.4).
//!
//! [`parse_list_query`] turns a raw query string into a [`ListQuery`]: `page`/`limit`
//! checked, brackets percent-decoded, repeated keys and comma lists merged for
//! `in`/`notin` (de-duplicated, at most [`MAX_LIST_VALUES`] values). `page` is bounded so
//! that the offset stays within [`MAX_OFFSET`]. [`validate`] then checks each filter against the resource's allow-list
//! ([`FieldSpec`]) and converts values to typed binds, so an unknown field, an operator
//! the field does not allow or a value of the wrong type is a 400 naming the parameter.
//!
//! Each resource's allow-list (`MEMBER_FILTERS`, `GROUP_FILTERS`, ...) is the one source
//! of its filters: [`validate`] reads it, and the OpenAPI document lists [`params`] of
//! the same table (`crate::http::extract::list_query_params`), so the two cannot drift.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::sql::{Bind, Cmp, Predicate};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Distinct values an `in`/`notin` filter (or smart-group trigger) may list: one
/// page's worth, as `limit`.
pub const MAX_LIST_VALUES: usize = 100;
/// The deepest offset a page may start at ((page − 1) × limit): an offset is rows the
/// database reads and throws away, so an unbounded `page` is a cheap way to make it
/// work hard.
pub const MAX_OFFSET: i64 = 10_000_000;
/// Dates given as Unix timestamps must fall within years 0000–9999 (in ms).
pub const MIN_DATE_MS: i64 = -62_167_219_200_000;
pub const MAX_DATE_MS: i64 = 253_402_300_799_999;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Contains,
    Before,
    After,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "in" => Op::In,
            "notin" => Op::NotIn,
            "contains" => Op::Contains,
            "before" => Op::Before,
            "after" => Op::After,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::In => "in",
            Op::NotIn => "notin",
            Op::Contains => "contains",
            Op::Before => "before",
            Op::After => "after",
        }
    }

    /// The SQL comparison this operator makes (`before`/`after` are `<`/`>` on dates).
    pub fn cmp(self) -> Cmp {
        match self {
            Op::Eq => Cmp::Eq,
            Op::Neq => Cmp::Neq,
            Op::Gt | Op::After => Cmp::Gt,
            Op::Gte => Cmp::Gte,
            Op::Lt | Op::Before => Cmp::Lt,
            Op::Lte => Cmp::Lte,
            Op::In => Cmp::In,
            Op::NotIn => Cmp::NotIn,
            Op::Contains => Cmp::Contains,
        }
    }

    pub fn is_list(self) -> bool {
        matches!(self, Op::In | Op::NotIn)
    }

    /// What a filter with this operator keeps (`the items whose field ...`), for the
    /// API document.
    pub fn meaning(self) -> &'static str {
        match self {
            Op::Eq => "equals the value",
            Op::Neq => "differs from the value",
            Op::Gt => "is greater than the value",
            Op::Gte => "is greater than or equal to the value",
            Op::Lt => "is less than the value",
            Op::Lte => "is less than or equal to the value",
            Op::In => "is one of the values (comma-separated or repeated)",
            Op::NotIn => "is none of the values (comma-separated or repeated)",
            Op::Contains => "contains the value, ignoring case",
            Op::Before => "is before the value",
            Op::After => "is after the value",
        }
    }
}

/// One `field[op]=value` filter as written by the client.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFilter {
    /// The parameter as the client wrote it (decoded), e.g. `email[in]`: error messages name it.
    pub param: String,
    pub field: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// `page`, `limit` and the filters of one list request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub page: u32,
    pub limit: u32,
    pub filters: Vec<RawFilter>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery { page: 1, limit: DEFAULT_LIMIT, filters: Vec::new() }
    }
}

impl ListQuery {
    /// (page − 1) × limit; [`parse_list_query`] keeps it within [`MAX_OFFSET`].
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)).saturating_mul(i64::from(self.limit))
    }
}

/// Parses `page`, `limit` and every `field[op]=value` parameter of a query string.
/// `extra` names further plain parameters the endpoint accepts (returned untouched
/// by the caller's own parsing); any other parameter is a 400.
pub fn parse_list_query(query: Option<&str>, extra: &[&str]) -> Result<ListQuery> {
    let mut out = ListQuery::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let key = key.trim();
        match key {
            "" => continue,
            "page" => {
                if let Some(n) = parse_positive(key, &value)? {
                    out.page = n;
                }
            }
            "limit" => {
                if let Some(n) = parse_positive(key, &value)? {
                    if n > MAX_LIMIT {
                        return Err(Error::invalid("limit", format!("must not be greater than {MAX_LIMIT}")));
                    }
                    out.limit = n;
                }
            }
            k if extra.contains(&k) => continue,
            _ => {
                let (field, op) = split_key(key)?;
                let values: Vec<String> = if op.is_list() {
                    value.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
                } else {
                    vec![value.to_string()]
                };
                if let Some(existing) = out.filters.iter_mut().find(|f| f.field == field && f.op == op) {
                    if !op.is_list() {
                        return Err(Error::invalid(key, "is given more than once"));
                    }
                    add_distinct(&mut existing.values, values, key)?;
                } else {
                    let mut distinct = Vec::new();
                    add_distinct(&mut distinct, values, key)?;
                    out.filters.push(RawFilter { param: key.to_string(), field, op, values: distinct });
                }
            }
        }
    }
    if out.offset() > MAX_OFFSET {
        return Err(Error::invalid(
            "page",
            format!("is too deep: (page - 1) × limit must not exceed {MAX_OFFSET}; narrow the list with filters"),
        ));
    }
    Ok(out)
}

/// Appends the values not listed yet; more than [`MAX_LIST_VALUES`] distinct ones is a
/// 400 naming `param`.
fn add_distinct(list: &mut Vec<String>, values: Vec<String>, param: &str) -> Result<()> {
    for v in values {
        if !list.contains(&v) {
            if list.len() == MAX_LIST_VALUES {
                return Err(Error::invalid(param, format!("lists at most {MAX_LIST_VALUES} distinct values")));
            }
            list.push(v);
        }
    }
    Ok(())
}

fn parse_positive(name: &str, value: &str) -> Result<Option<u32>> {
    let value = value.trim();
    if value.is_empty() || value == "null" {
        return Ok(None);
    }
    match value.parse::<i64>() {
        Ok(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(Some(n as u32)),
        Ok(_) => Err(Error::invalid(name, "must be an integer greater than or equal to 1")),
        Err(_) => Err(Error::invalid(name, "must be an integer")),
    }
}

/// `email[in]` → (`email`, `in`). A key without brackets, or with an unknown operator, is a 400.
fn split_key(key: &str) -> Result<(String, Op)> {
    let Some(open) = key.find('[') else {
        return Err(Error::invalid(key, "is not a known query parameter"));
    };
    if !key.ends_with(']') || open == 0 {
        return Err(Error::invalid(key, "must be written field[operator]"));
    }
    let field = &key[..open];
    let op_text = &key[open + 1..key.len() - 1];
    let op = Op::parse(op_text).ok_or_else(|| Error::invalid(key, format!("unknown operator '{op_text}'")))?;
    Ok((field.to_string(), op))
}

/// How a filterable field's values are read.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Compared as given.
    Text,
    /// Compared lower-cased (the column holds the lower-cased value).
    TextLower,
    /// Unix seconds, or milliseconds above 10^12; bound as milliseconds.
    Date,
    Uuid,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    Integer,
}

/// One filterable field of a resource: its wire name, its column and allowed operators.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub field: &'static str,
    pub column: &'static str,
    pub kind: Kind,
    pub ops: &'static [Op],
}

impl FieldSpec {
    /// The query parameter of this field with `op`, e.g. `email[in]`.
    pub fn param(&self, op: Op) -> String {
        format!("{}[{}]", self.field, op.as_str())
    }
}

/// Every `field[op]` query parameter `specs` allows, in table order, with its field and
/// operator: what [`validate`] accepts and what the API document lists for the resource.
pub fn params(specs: &[FieldSpec]) -> impl Iterator<Item = (String, &FieldSpec, Op)> {
    specs.iter().flat_map(|s| s.ops.iter().map(move |&op| (s.param(op), s, op)))
}

/// Converts Unix seconds (or ms above 10^12) to ms.
pub fn unix_to_ms(v: i64) -> i64 {
    if v.unsigned_abs() > 1_000_000_000_000 {
        v
    } else {
        v.saturating_mul(1000)
    }
}

/// [`unix_to_ms`] for a date given by a client: None outside years 0000–9999.
pub fn date_ms(v: i64) -> Option<i64> {
    Some(unix_to_ms(v)).filter(|ms| (MIN_DATE_MS..=MAX_DATE_MS).contains(ms))
}

/// Checks `filters` against `specs`, returning typed predicates.
pub fn validate<'a>(filters: impl IntoIterator<Item = &'a RawFilter>, specs: &[FieldSpec]) -> Result<Vec<Predicate>> {
    filters.into_iter().map(|f| validate_one(f, specs)).collect()
}

fn validate_one(f: &RawFilter, specs: &[FieldSpec]) -> Result<Predicate> {
    let spec = specs
        .iter()
        .find(|s| s.field == f.field)
        .ok_or_else(|| Error::invalid(&f.param, format!("unknown filter field '{}'", f.field)))?;
    if !spec.ops.contains(&f.op) {
        let allowed: Vec<&str> = spec.ops.iter().map(|o| o.as_str()).collect();
        return Err(Error::invalid(
            &f.param,
            format!("operator '{}' is not allowed on '{}' (allowed: {})", f.op.as_str(), f.field, allowed.join(", ")),
        ));
    }
    if f.values.is_empty() {
        return Err(Error::invalid(&f.param, "needs a value"));
    }
    let values = f.values.iter().map(|v| convert(&f.param, spec.kind, v)).collect::<Result<Vec<_>>>()?;
    Ok(Predicate { column: spec.column, cmp: f.op.cmp(), values })
}

fn convert(param: &str, kind: Kind, raw: &str) -> Result<Bind> {
    Ok(match kind {
        Kind::Text => Bind::Text(raw.to_string()),
        Kind::TextLower => Bind::Text(raw.trim().to_lowercase()),
        Kind::Date => {
            let n: i64 = raw
                .trim()
                .parse()
                .map_err(|_| Error::invalid(param, "must be a Unix timestamp (seconds or milliseconds)"))?;
            Bind::I64(date_ms(n).ok_or_else(|| Error::invalid(param, "is out of range (years 0000 to 9999)"))?)
        }
        Kind::Integer => Bind::I64(raw.trim().parse().map_err(|_| Error::invalid(param, "must be an integer"))?),
        Kind::Uuid => Bind::Uuid(Uuid::parse_str(raw.trim()).map_err(|_| Error::invalid(param, "must be a UUID"))?),
        Kind::Enum(allowed) => {
            if !allowed.contains(&raw) {
                return Err(Error::invalid(param, format!("must be one of {}", allowed.join(", "))));
            }
            Bind::Text(raw.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: Error) -> String {
        e.to_string()
    }

    const SPECS: &[FieldSpec] = &[
        FieldSpec { field: "email", column: "email_norm", kind: Kind::TextLower, ops: &[Op::In] },
        FieldSpec {
            field: "registrationDate",
            column: "registered_at",
            kind: Kind::Date,
            ops: &[Op::Before, Op::After],
        },
        FieldSpec { field: "customRoleId", column: "custom_role_id", kind: Kind::Uuid, ops: &[Op::Eq] },
        FieldSpec {
            field: "status",
            column: "status",
            kind: Kind::Enum(&["Invited", "Started"]),
            ops: &[Op::Eq, Op::In],
        },
    ];

    /// A value `kind` reads.
    fn sample(kind: Kind) -> String {
        match kind {
            Kind::Text | Kind::TextLower => "a@x.io".into(),
            Kind::Date | Kind::Integer => "1700000000".into(),
            Kind::Uuid => Uuid::nil().to_string(),
            Kind::Enum(values) => values[0].into(),
        }
    }

    #[test]
    fn params_are_exactly_what_validate_accepts() {
        let names: Vec<String> = params(SPECS).map(|(name, _, _)| name).collect();
        assert_eq!(
            names,
            [
                "email[in]",
                "registrationDate[before]",
                "registrationDate[after]",
                "customRoleId[eq]",
                "status[eq]",
                "status[in]"
            ]
        );
        const ALL: &[Op] = &[
            Op::Eq,
            Op::Neq,
            Op::Gt,
            Op::Gte,
            Op::Lt,
            Op::Lte,
            Op::In,
            Op::NotIn,
            Op::Contains,
            Op::Before,
            Op::After,
        ];
        for spec in SPECS {
            for &op in ALL {
                let query = format!("{}={}", spec.param(op), sample(spec.kind));
                let filters = parse_list_query(Some(&query), &[]).ok().map(|q| q.filters).unwrap_or_default();
                let listed = names.contains(&spec.param(op));
                assert_eq!(validate(&filters, SPECS).is_ok(), listed, "{query}");
            }
        }
    }

    #[test]
    fn defaults_when_absent() {
        let q = parse_list_query(None, &[]).ok();
        assert_eq!(q, Some(ListQuery { page: 1, limit: 20, filters: vec![] }));
    }

    #[test]
    fn page_and_limit_bounds() {
        let q = parse_list_query(Some("page=3&limit=100"), &[]).ok();
        assert_eq!(q.map(|q| (q.page, q.limit, q.offset())), Some((3, 100, 200)));
        for bad in ["page=0", "limit=0", "limit=101", "page=-1", "page=abc", "limit=1.5"] {
            let err = parse_list_query(Some(bad), &[]).err().map(msg).unwrap_or_default();
            let name = bad.split('=').next().unwrap_or_default();
            assert!(err.starts_with(name), "{bad} → {err}");
        }
        // An empty value means "not given".
        assert_eq!(parse_list_query(Some("page=&limit="), &[]).ok().map(|q| (q.page, q.limit)), Some((1, 20)));
    }

    #[test]
    fn brackets_may_be_percent_encoded() {
        let q = parse_list_query(Some("email%5Bin%5D=a%40x.io"), &[]).ok();
        let f = q.map(|q| q.filters).unwrap_or_default();
        assert_eq!(
            f,
            vec![RawFilter {
                param: "email[in]".into(),
                field: "email".into(),
                op: Op::In,
                values: vec!["a@x.io".into()]
            }]
        );
    }

    #[test]
    fn in_takes_comma_lists_and_repeated_keys() {
        let q = parse_list_query(Some("email[in]=a@x.io,b@x.io&email[in]=c@x.io"), &[]).ok();
        let values = q.map(|q| q.filters[0].values.clone()).unwrap_or_default();
        assert_eq!(values, vec!["a@x.io", "b@x.io", "c@x.io"]);
    }

    #[test]
    fn repeated_single_value_operator_is_refused() {
        let err = parse_list_query(Some("name[eq]=a&name[eq]=b"), &[]).err().map(msg).unwrap_or_default();
        assert!(err.contains("name[eq]") && err.contains("more than once"), "{err}");
    }

    #[test]
    fn unknown_operator_and_plain_keys_are_named() {
        let err = parse_list_query(Some("email[like]=x"), &[]).err().map(msg).unwrap_or_default();
        assert!(err.contains("email[like]") && err.contains("like"), "{err}");
        let err = parse_list_query(Some("foo=1"), &[]).err().map(msg).unwrap_or_default();
        assert!(err.starts_with("foo"), "{err}");
        assert!(parse_list_query(Some("showDetail=true"), &["showDetail"]).is_ok());
    }

    #[test]
    fn unknown_field_and_disallowed_op_are_named() {
        let q = parse_list_query(Some("nickname[in]=x"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        let err = validate(&q, SPECS).err().map(msg).unwrap_or_default();
        assert!(err.starts_with("nickname[in]") && err.contains("unknown filter field"), "{err}");
        let q = parse_list_query(Some("email[eq]=x"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        let err = validate(&q, SPECS).err().map(msg).unwrap_or_default();
        assert!(err.starts_with("email[eq]") && err.contains("not allowed"), "{err}");
    }

    #[test]
    fn dates_are_seconds_or_milliseconds() {
        assert_eq!(unix_to_ms(1_700_000_000), 1_700_000_000_000);
        assert_eq!(unix_to_ms(1_700_000_000_123), 1_700_000_000_123);
        let q =
            parse_list_query(Some("registrationDate[after]=1700000000&registrationDate[before]=1800000000000"), &[])
                .ok()
                .map(|q| q.filters)
                .unwrap_or_default();
        let p = validate(&q, SPECS).ok().unwrap_or_default();
        assert_eq!(p[0].values, vec![Bind::I64(1_700_000_000_000)]);
        assert_eq!(p[0].cmp, Cmp::Gt);
        assert_eq!(p[1].values, vec![Bind::I64(1_800_000_000_000)]);
        let q = parse_list_query(Some("registrationDate[after]=yesterday"), &[])
            .ok()
            .map(|q| q.filters)
            .unwrap_or_default();
        assert!(validate(&q, SPECS).err().map(msg).unwrap_or_default().starts_with("registrationDate[after]"));
    }

    #[test]
    fn emails_are_lower_cased_and_uuids_checked() {
        let q = parse_list_query(Some("email[in]=John@X.io"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        assert_eq!(validate(&q, SPECS).ok().map(|p| p[0].values.clone()), Some(vec![Bind::Text("john@x.io".into())]));
        let q = parse_list_query(Some("customRoleId[eq]=nope"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        assert!(validate(&q, SPECS).err().map(msg).unwrap_or_default().contains("UUID"));
    }

    #[test]
    fn enums_are_checked() {
        let q = parse_list_query(Some("status[in]=Invited,Started"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        assert!(validate(&q, SPECS).is_ok());
        let q = parse_list_query(Some("status[eq]=Done"), &[]).ok().map(|q| q.filters).unwrap_or_default();
        assert!(validate(&q, SPECS).err().map(msg).unwrap_or_default().contains("must be one of"));
    }

    #[test]
    fn list_filters_are_deduplicated_and_capped() {
        let q = parse_list_query(Some("email[in]=a@x.io,b@x.io,a@x.io&email[in]=b@x.io,c@x.io"), &[]).ok();
        let values = q.map(|q| q.filters[0].values.clone()).unwrap_or_default();
        assert_eq!(values, vec!["a@x.io", "b@x.io", "c@x.io"]);
        let hundred: Vec<String> = (0..MAX_LIST_VALUES).map(|i| format!("m{i}@x.io")).collect();
        // 100 distinct values, each given twice: accepted.
        let q = format!("email[notin]={}&email[notin]={}", hundred.join(","), hundred.join(","));
        assert_eq!(parse_list_query(Some(&q), &[]).ok().map(|q| q.filters[0].values.len()), Some(MAX_LIST_VALUES));
        // One more distinct value, in a comma list or a repeated key: refused, named.
        for q in [
            format!("email[in]={},extra@x.io", hundred.join(",")),
            format!("email%5Bin%5D={}&email[in]=extra@x.io", hundred.join(",")),
        ] {
            let err = parse_list_query(Some(&q), &[]).err().map(msg).unwrap_or_default();
            assert!(err.starts_with("email[in]") && err.contains("100"), "{err}");
        }
    }

    #[test]
    fn page_is_bounded() {
        let q = parse_list_query(Some("page=100001&limit=100"), &[]).ok();
        assert_eq!(q.map(|q| q.offset()), Some(MAX_OFFSET));
        for bad in ["page=100002&limit=100", "page=4294967295&limit=100", "limit=100&page=4294967295", "page=10000002"]
        {
            let err = parse_list_query(Some(bad), &[]).err().map(msg).unwrap_or_default();
            assert!(err.starts_with("page"), "{bad} → {err}");
        }
        assert!(parse_list_query(Some("page=10000001&limit=1"), &[]).is_ok());
        let err = parse_list_query(Some("page=99999999999999999999"), &[]).err().map(msg).unwrap_or_default();
        assert!(err.starts_with("page"), "{err}");
    }

    #[test]
    fn extreme_dates_are_refused_not_overflowed() {
        for v in [
            i64::MIN.to_string(),
            i64::MAX.to_string(),
            "-9223372036854775807".to_string(),
            "999999999999".to_string(),
            "253402300800000".to_string(),
            "-62167219200001".to_string(),
        ] {
            let q = parse_list_query(Some(&format!("registrationDate[after]={v}")), &[])
                .ok()
                .map(|q| q.filters)
                .unwrap_or_default();
            let err = validate(&q, SPECS).err().map(msg).unwrap_or_default();
            assert!(err.starts_with("registrationDate[after]") && err.contains("range"), "{v} → {err}");
        }
        for (v, ms) in [("253402300799", 253_402_300_799_000), ("-62167219200", MIN_DATE_MS), ("0", 0)] {
            let q = parse_list_query(Some(&format!("registrationDate[before]={v}")), &[])
                .ok()
                .map(|q| q.filters)
                .unwrap_or_default();
            assert_eq!(validate(&q, SPECS).ok().map(|p| p[0].values.clone()), Some(vec![Bind::I64(ms)]), "{v}");
        }
        assert_eq!(unix_to_ms(i64::MIN), i64::MIN);
        assert_eq!(date_ms(i64::MIN), None);
    }
}
