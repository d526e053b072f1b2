//! The SQL form of smart-group rules (`store::smart_sql`) selects exactly the members
//! the Rust evaluator (`Rules::matches_with`) accepts, on SQLite and on PostgreSQL.
//!
//! Proptest generates spots of members (every member field, each type of custom
//! property, values with upper case, non-ASCII letters and LIKE wildcards) and random
//! two-level rules over all fields and operators, then checks, for each case:
//!
//! * the members the compiled predicate selects equal those the evaluator accepts;
//! * a full computation in small batches (crossing batch boundaries), starting from a
//!   membership that is partly wrong and with a blacklist, ends with exactly the
//!   accepted members minus the blacklisted ones, the group ready and its count right.
//!
//! PostgreSQL runs when `TEST_POSTGRES_URL` is set (each test creates and drops its
//! own database), and is skipped visibly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};

use openspot::domain::groups::{self, NewGroup};
use openspot::domain::ids::{MemberId, PropertyId, RoleId, SpotId};
use openspot::domain::members::Member;
use openspot::domain::properties::{self, NewProperty, PropertyDef};
use openspot::domain::smart_rules::Rules;
use openspot::domain::vocab::{GroupRole, MemberRole, MemberStatus};
use openspot::store::members::MemberRow;
use openspot::store::property_values::StoredValue;
use openspot::store::{self, Backend, Db};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};
use uuid::Uuid;

const CASES: u32 = 64;
/// Characters of generated names and needles: both cases, non-ASCII letters whose
/// lower case differs (and, for `İ` and `ß`, changes length), LIKE wildcards.
const CHARS: &[&str] = &["a", "A", "b", "é", "É", "ß", "İ", "%", "_", "0"];
const OPTIONS: &[&str] = &["a", "B", "é"];
const DATES: &[&str] = &["2024-01-01", "2024-06-30", "2025-01-01"];
const NUMBERS: &[f64] = &[-1.5, 0.0, 2.0, 3.25, 100.0];
/// Custom role ids members hold (canonical spelling).
const ROLES: &[&str] = &["01930000-0000-7000-8000-00000000000a", "01930000-0000-7000-8000-00000000000b"];
/// Seconds; member times are these × 1000 ± 1 ms.
const SECONDS: &[i64] = &[1_000, 2_000, 3_000];

/// A database for one test: a SQLite file or a PostgreSQL database dropped at the end.
struct TestDb {
    db: Db,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    async fn open(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("smart.db").display());
                Some(TestDb { db: Db::connect_and_migrate(&url).await.unwrap(), _dir: Some(dir), pg: None })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_POSTGRES_URL") else {
                    if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                        panic!("TEST_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set");
                    }
                    eprintln!("skipped: PostgreSQL test (set TEST_POSTGRES_URL to run it)");
                    return None;
                };
                let name = format!("openspot_t_{}", Uuid::new_v4().simple());
                let admin = Db::connect(&admin_url).await.unwrap();
                if let Db::Postgres(p) = &admin {
                    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(p).await.unwrap();
                }
                admin.close().await;
                let base = &admin_url[..admin_url.rfind('/').unwrap()];
                let db = Db::connect_and_migrate(&format!("{base}/{name}")).await.unwrap();
                Some(TestDb { db, _dir: None, pg: Some((admin_url, name)) })
            }
        }
    }

    async fn close(self) {
        self.db.close().await;
        if let Some((admin_url, name)) = self.pg {
            let admin = Db::connect(&admin_url).await.unwrap();
            if let Db::Postgres(p) = &admin {
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(p).await.unwrap();
            }
            admin.close().await;
        }
    }
}

/// One generated member: its fields and its custom-property values.
#[derive(Clone, Debug)]
struct MemberSpec {
    status: usize,
    role: usize,
    email: Option<String>,
    firstname: String,
    lastname: String,
    custom_role: Option<usize>,
    invited: (usize, i64),
    registered: Option<(usize, i64)>,
    text: Option<String>,
    number: Option<f64>,
    boolean: Option<bool>,
    date: Option<usize>,
    single: Option<usize>,
    /// Chosen options, stored from `ord` = the offset (a gap: an option was removed).
    multiple: (Vec<usize>, i64),
    /// Blacklisted from the group, and in the group before the computation.
    blacklisted: bool,
    member_before: bool,
}

fn word(max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(CHARS), 0..=max).prop_map(|v| v.concat()).boxed()
}

fn member() -> impl Strategy<Value = MemberSpec> {
    let fields = (
        0..MemberStatus::NAMES.len(),
        0..MemberRole::NAMES.len(),
        prop::option::of(word(2)),
        word(3),
        word(2),
        prop::option::of(0..ROLES.len()),
        (0..SECONDS.len(), -1i64..=1),
        prop::option::of((0..SECONDS.len(), -1i64..=1)),
    );
    let values = (
        prop::option::of(word(3)),
        prop::option::of(prop::sample::select(NUMBERS)),
        prop::option::of(any::<bool>()),
        prop::option::of(0..DATES.len()),
        prop::option::of(0..OPTIONS.len()),
        (prop::sample::subsequence((0..OPTIONS.len()).collect::<Vec<_>>(), 0..=OPTIONS.len()), 0i64..=1),
        any::<bool>(),
        any::<bool>(),
    );
    (fields, values).prop_map(|(f, v)| MemberSpec {
        status: f.0,
        role: f.1,
        email: f.2,
        firstname: f.3,
        lastname: f.4,
        custom_role: f.5,
        invited: f.6,
        registered: f.7,
        text: v.0,
        number: v.1,
        boolean: v.2,
        date: v.3,
        single: v.4,
        multiple: v.5,
        blacklisted: v.6,
        member_before: v.7,
    })
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::sample::select(values).prop_map(Value::from).boxed()
}

fn list_of(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::sample::subsequence(values.to_vec(), 1..=values.len().min(3)).prop_map(|l| json!(l)).boxed()
}

fn trigger(field: &'static str, ops: &'static [&'static str], value: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    (prop::sample::select(ops), value)
        .prop_map(move |(op, value)| json!({"field": field, "op": op, "value": value}))
        .boxed()
}

/// Text operand strategies: one value (eq, neq, contains) or a list (in, notin).
fn text_trigger(field: &'static str, ops: &'static [&'static str], one: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let list = prop::collection::vec(one.clone(), 1..3).prop_map(|l| json!(l));
    (prop::sample::select(ops), one, list)
        .prop_map(move |(op, v, l)| {
            let value = if op == "in" || op == "notin" { l } else { json!(v) };
            json!({"field": field, "op": op, "value": value})
        })
        .boxed()
}

/// Email operands: a member's address spelled in another case, or a fragment.
fn email_operand() -> BoxedStrategy<String> {
    prop_oneof![
        (word(2), 0usize..6).prop_map(|(w, i)| format!("{w}.{i}@X.io")),
        (word(2), 0usize..6).prop_map(|(w, i)| format!("{}.{i}@x.IO", w.to_uppercase())),
        word(2),
        Just("@x.io".to_string()),
    ]
    .boxed()
}

fn role_operand() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(ROLES).prop_map(str::to_string),
        prop::sample::select(ROLES).prop_map(|r| r.to_uppercase()),
        Just("01930000-0000-7000-8000-0000000000ff".to_string()),
    ]
    .boxed()
}

fn time_trigger(field: &'static str) -> BoxedStrategy<Value> {
    let seconds = prop_oneof![Just(999i64), Just(1_000), Just(1_500), Just(2_000), Just(3_000), Just(3_001)];
    trigger(field, &["before", "after"], seconds.prop_map(Value::from).boxed())
}

fn any_trigger() -> BoxedStrategy<Value> {
    const TEXT_OPS: &[&str] = &["eq", "neq", "in", "notin", "contains"];
    prop_oneof![
        text_trigger("status", TEXT_OPS, prop::sample::select(MemberStatus::NAMES).prop_map(str::to_string).boxed()),
        trigger("status", &["contains"], pick(&["ed", "Acc", "ACC", "", "%"])),
        text_trigger("role", TEXT_OPS, prop::sample::select(MemberRole::NAMES).prop_map(str::to_string).boxed()),
        text_trigger("email", TEXT_OPS, email_operand()),
        text_trigger("firstname", TEXT_OPS, word(3)),
        text_trigger("lastname", TEXT_OPS, word(2)),
        text_trigger("customRoleId", &["eq", "neq", "in", "notin"], role_operand()),
        trigger("customRoleId", &["contains"], pick(&["a", "0193", "-8000-", "00A", "x"])),
        time_trigger("registrationDate"),
        time_trigger("invitationDate"),
        text_trigger("customProperties.t", &["eq", "neq", "in", "contains"], word(2)),
        // Short needles, where case folding decides.
        text_trigger("firstname", &["contains"], word(1)),
        text_trigger("lastname", &["contains"], word(1)),
        text_trigger("email", &["contains"], word(1)),
        text_trigger("customProperties.t", &["contains"], word(1)),
        trigger(
            "customProperties.n",
            &["eq", "neq", "gt", "gte", "lt", "lte"],
            prop::sample::select(NUMBERS).prop_map(Value::from).boxed()
        ),
        trigger("customProperties.b", &["eq"], any::<bool>().prop_map(Value::from).boxed()),
        trigger("customProperties.d", &["eq", "before", "after"], pick(DATES)),
        trigger("customProperties.s", &["eq", "neq"], pick(OPTIONS)),
        trigger("customProperties.s", &["in"], list_of(OPTIONS)),
        trigger("customProperties.ms", &["contains"], pick(OPTIONS)),
        trigger("customProperties.ms", &["in"], list_of(OPTIONS)),
    ]
    .boxed()
}

fn rules() -> impl Strategy<Value = Value> {
    let junction = || prop::sample::select(&["AND", "OR"][..]);
    let condition = (junction(), prop::collection::vec(any_trigger(), 1..4))
        .prop_map(|(op, triggers)| json!({"operator": op, "triggers": triggers}));
    (junction(), prop::collection::vec(condition, 1..4))
        .prop_map(|(op, conditions)| json!({"operator": op, "conditions": conditions}))
}

/// The spot's custom properties, one of each type.
async fn create_properties(db: &Db, spot_id: SpotId) -> HashMap<&'static str, PropertyDef> {
    let mut out = HashMap::new();
    for (slug, kind) in [
        ("t", "Text"),
        ("n", "Number"),
        ("b", "Boolean"),
        ("d", "Date"),
        ("s", "SingleSelect"),
        ("ms", "MultipleSelect"),
    ] {
        let options = kind.ends_with("Select").then(|| OPTIONS.iter().map(|o| o.to_string()).collect());
        let new = NewProperty {
            slug: Some(slug.into()),
            label: Some(slug.into()),
            kind: Some(kind.into()),
            possible_values: options,
            ..Default::default()
        };
        out.insert(slug, properties::create_property(db, spot_id, new).await.unwrap());
    }
    out
}

/// Checks one generated case (see the module docs).
async fn check(db: &Db, specs: &[MemberSpec], rules_json: &Value) {
    let (spot, _) = openspot::domain::spots::create_spot(db, "smart").await.unwrap();
    let props = create_properties(db, spot.id).await;
    let defs: Vec<PropertyDef> = props.values().cloned().collect();

    // The members and their values, below the API.
    let mut tx = db.begin().await.unwrap();
    let mut ids = Vec::new();
    let mut values: Vec<(PropertyId, MemberId, i64, StoredValue)> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let id = MemberId::generate();
        let at = |(k, d): (usize, i64)| SECONDS[k] * 1000 + d;
        let row = MemberRow {
            spot_id: spot.id,
            id,
            user_id: None,
            email: s.email.as_ref().map(|w| format!("{w}.{i}@x.io")),
            mobile_number: None,
            title: None,
            lang: "en".into(),
            role: MemberRole::NAMES[s.role].parse().unwrap(),
            custom_role_id: s.custom_role.map(|r| RoleId::from(Uuid::parse_str(ROLES[r]).unwrap())),
            status: MemberStatus::NAMES[s.status].parse().unwrap(),
            firstname: s.firstname.clone(),
            lastname: s.lastname.clone(),
            warnings: 0,
            avatar_url: None,
            embed_base_urls: None,
            invited_at: at(s.invited),
            registered_at: s.registered.map(at),
            updated_at: 0,
            last_activity_at: None,
        };
        store::members::insert_if_absent(tx.ex(), &row).await.unwrap().unwrap();
        ids.push(id);
        let text = |t: &str| StoredValue { text: Some(t.to_string()), num: None };
        let num = |n: f64| StoredValue { text: None, num: Some(n) };
        if let Some(t) = &s.text {
            values.push((props["t"].id, id, 0, text(t)));
        }
        if let Some(n) = s.number {
            values.push((props["n"].id, id, 0, num(n)));
        }
        if let Some(b) = s.boolean {
            values.push((props["b"].id, id, 0, num(if b { 1.0 } else { 0.0 })));
        }
        if let Some(d) = s.date {
            values.push((props["d"].id, id, 0, text(DATES[d])));
        }
        if let Some(o) = s.single {
            values.push((props["s"].id, id, 0, text(OPTIONS[o])));
        }
        for (k, o) in s.multiple.0.iter().enumerate() {
            values.push((props["ms"].id, id, s.multiple.1 + k as i64, text(OPTIONS[*o])));
        }
    }
    store::property_values::insert_many(tx.ex(), spot.id, &values).await.unwrap();
    tx.commit().await.unwrap();

    // What the evaluator accepts, member by member, and what the compiled predicate
    // selects: for the whole rules, then for each trigger alone (whose differences a
    // junction could hide).
    let mut c = db.conn().await.unwrap();
    let members: Vec<Member> =
        store::members::get_many(c.ex(), spot.id, &ids).await.unwrap().into_iter().map(Member::from).collect();
    let stored = store::property_values::list_of_members(c.ex(), spot.id, &ids).await.unwrap();
    let mut accepted = BTreeSet::new();
    let triggers: Vec<Value> = rules_json["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["triggers"].as_array().unwrap().clone())
        .map(|t| json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [t]}]}))
        .collect();
    for (i, rules_json) in std::iter::once(rules_json).chain(&triggers).enumerate() {
        let rules = Rules::parse_with(rules_json, &defs, true).unwrap();
        let by_rust: BTreeSet<MemberId> = members
            .iter()
            .filter(|m| rules.matches_with(m, &stored.get(&m.id).cloned().unwrap_or_default()))
            .map(|m| m.id)
            .collect();
        let by_sql: BTreeSet<MemberId> =
            store::smart_sql::matching(c.ex(), spot.id, &rules.member_test()).await.unwrap().into_iter().collect();
        if std::env::var("SMART_SQL_DEBUG").is_ok() {
            eprintln!("{} of {} {rules_json}", by_rust.len(), members.len());
        }
        assert_eq!(by_sql, by_rust, "SQL and Rust disagree on {rules_json}");
        if i == 0 {
            accepted = by_rust;
        }
    }
    drop(c);

    // A full computation, in batches of 3, from a partly wrong membership.
    let mut tx = db.begin().await.unwrap();
    let group = groups::create_in(
        &mut tx,
        spot.id,
        NewGroup {
            name: Some("smart".into()),
            kind: Some("Smart".into()),
            rules: Some(rules_json.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut blacklisted = BTreeSet::new();
    for (s, id) in specs.iter().zip(&ids) {
        if s.blacklisted {
            store::blacklist::insert(tx.ex(), spot.id, group.id, *id).await.unwrap();
            blacklisted.insert(*id);
        }
        if s.member_before {
            store::memberships::insert(tx.ex(), spot.id, group.id, *id, GroupRole::Member, 0).await.unwrap();
            store::groups::add_member_count(tx.ex(), spot.id, group.id, 1).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    groups::compute_in_batches_of_at_most(db, spot.id, group.id, 3).await.unwrap();
    let mut c = db.conn().await.unwrap();
    let members: BTreeSet<MemberId> = store::memberships::list(c.ex(), spot.id, group.id, &[], 0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.id)
        .collect();
    drop(c);
    let expected: BTreeSet<MemberId> = accepted.difference(&blacklisted).copied().collect();
    assert_eq!(members, expected, "the computation's membership for {rules_json}");
    let g = groups::get_group(db, spot.id, group.id).await.unwrap();
    assert!(g.ready, "the computation ends with the group ready");
    assert_eq!(g.member_count, expected.len() as i64, "the member count follows the membership");
}

fn sql_agrees_with_rust(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(test_db) = rt.block_on(TestDb::open(backend)) else { return };
    let mut runner =
        TestRunner::new(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() });
    let strategy = (prop::collection::vec(member(), 0..24), rules());
    let outcome = runner.run(&strategy, |(specs, rules_json)| {
        rt.block_on(check(&test_db.db, &specs, &rules_json));
        Ok(())
    });
    rt.block_on(test_db.close());
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn sql_selects_what_rust_accepts_sqlite() {
    sql_agrees_with_rust(Backend::Sqlite);
}

#[test]
fn sql_selects_what_rust_accepts_postgres() {
    sql_agrees_with_rust(Backend::Postgres);
}
