//! Citus (issue 17): when the `citus` extension is present in the database, `migrate`
//! distributes the schema after the sqlx migrations. `spots` and `kz_connectors` become
//! reference tables (a copy on every node: they are looked up by API key and by
//! application id, before any spot is known) and every other table with a `spot_id`
//! column is hash-distributed by `spot_id` in one colocation group, so that a spot's
//! rows of every table live on one node and each request, led by its spot, reads and
//! writes one shard. On plain PostgreSQL (no extension) it does nothing.
//!
//! The tables are found in the catalog (every table of the schema with a `spot_id`
//! column), not listed by hand, so a table added by a later migration is distributed
//! too. Tables already in `pg_dist_partition` are left as they are: a second run (every
//! `serve` and `migrate` runs it) changes nothing.
//!
//! Citus accepts a foreign key between two distributed tables only if both are
//! distributed and colocated, and from a distributed table only to a reference table;
//! a local table may not reference a distributed one in the meantime. So the foreign keys
//! of the tables being converted are dropped first, every table is converted, and the
//! keys are created again as they were, all in one transaction: a failure leaves the
//! schema as it was.
//!
//! `docs/citus.md` is the operator's side of this.

use sqlx::{PgConnection, PgPool, Row};

/// The tables copied to every node rather than split by spot.
pub const REFERENCE_TABLES: &[&str] = &["spots", "kz_connectors"];

/// The distribution column of every other table.
pub const DISTRIBUTION_COLUMN: &str = "spot_id";

/// What [`distribute`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distribution {
    /// Whether the `citus` extension is installed (false: plain PostgreSQL, nothing done).
    pub citus: bool,
    /// Tables made reference tables by this run.
    pub referenced: Vec<String>,
    /// Tables hash-distributed by `spot_id` by this run.
    pub distributed: Vec<String>,
    /// Foreign keys dropped and created again around the conversion.
    pub foreign_keys: usize,
}

/// Whether the database has the `citus` extension.
pub async fn is_citus(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        .fetch_one(pool)
        .await
}

/// The tables of the current schema that hold a `spot_id` column (shards that Citus
/// keeps in the same schema, `<table>_<shard id>`, left out), by name.
async fn spot_tables(c: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar::<_, String>(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $1 \
                     AND NOT a.attisdropped) \
         AND NOT (c.relname ~ '_[0-9]+$' AND EXISTS (SELECT 1 FROM pg_dist_partition p \
                  WHERE p.logicalrelid = to_regclass(quote_ident(regexp_replace(c.relname, '_[0-9]+$', ''))))) \
         ORDER BY 1",
    )
    .bind(DISTRIBUTION_COLUMN)
    .fetch_all(c)
    .await
}

/// The tables of the current schema in Citus's metadata, with their kind.
async fn citus_tables(c: &mut PgConnection) -> Result<Vec<(String, Kind)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name, p.partmethod::text AS method, p.repmodel::text AS repmodel \
         FROM pg_dist_partition p \
         JOIN pg_class c ON c.oid = p.logicalrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema()",
    )
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind = match (r.get::<String, _>("method").as_str(), r.get::<String, _>("repmodel").as_str()) {
                ("h", _) => Kind::Distributed,
                ("n", "t") => Kind::Reference,
                // A Citus-local table: Citus adds a local table that references a
                // reference table to its metadata by itself (a table created by a
                // migration after the conversion); it is distributed like the others.
                _ => Kind::Other,
            };
            (r.get::<String, _>("name"), kind)
        })
        .collect())
}

/// How Citus holds a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Distributed,
    Reference,
    Other,
}

/// Makes the schema distributed on Citus (see the module docs); nothing on plain
/// PostgreSQL or when every table is distributed already.
pub async fn distribute(pool: &PgPool) -> anyhow::Result<Distribution> {
    if !is_citus(pool).await? {
        return Ok(Distribution::default());
    }
    let mut done = Distribution { citus: true, ..Distribution::default() };
    let mut tx = pool.begin().await?;
    // Several replicas may start at once: one converts, the others then find it done.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('openspot citus distribute'))").execute(&mut *tx).await?;
    let managed = citus_tables(&mut tx).await?;
    let is = |t: &str, kind: Kind| managed.iter().any(|(name, k)| name == t && *k == kind);
    let mut tables: Vec<String> = spot_tables(&mut tx).await?;
    for r in REFERENCE_TABLES {
        if !tables.iter().any(|t| t == r) {
            tables.push((*r).to_string());
        }
    }
    let referenced: Vec<String> =
        REFERENCE_TABLES.iter().filter(|t| !is(t, Kind::Reference)).map(|t| (*t).to_string()).collect();
    let distributed: Vec<String> = tables
        .iter()
        .filter(|t| !REFERENCE_TABLES.contains(&t.as_str()) && !is(t, Kind::Distributed))
        .cloned()
        .collect();
    if referenced.is_empty() && distributed.is_empty() {
        tracing::debug!("citus: every table is distributed already");
        return Ok(done);
    }
    // The colocation group: that of a table distributed before, or a new one.
    let anchor = managed
        .iter()
        .find(|(name, kind)| *kind == Kind::Distributed && tables.contains(name))
        .map(|(name, _)| name.clone());

    // One connection per node for the whole transaction: the data copies and the
    // foreign keys created next see each other's writes.
    sqlx::query("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'").execute(&mut *tx).await?;
    let converting: Vec<&String> = referenced.iter().chain(distributed.iter()).collect();
    let keys = sqlx::query(
        "SELECT con.conname::text AS name, cl.relname::text AS tbl, pg_get_constraintdef(con.oid) AS def \
         FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid \
         JOIN pg_class rf ON rf.oid = con.confrelid JOIN pg_namespace n ON n.oid = cl.relnamespace \
         WHERE con.contype = 'f' AND n.nspname = current_schema() \
         AND (cl.relname = ANY($1) OR rf.relname = ANY($1)) ORDER BY cl.relname, con.conname",
    )
    .bind(converting.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let keys: Vec<(String, String, String)> =
        keys.iter().map(|r| (r.get("name"), r.get("tbl"), r.get("def"))).collect();
    for (name, table, _) in &keys {
        sqlx::query(&format!("ALTER TABLE {} DROP CONSTRAINT {}", ident(table), ident(name))).execute(&mut *tx).await?;
    }
    for t in &referenced {
        sqlx::query("SELECT create_reference_table($1::regclass)").bind(ident(t)).execute(&mut *tx).await?;
    }
    let mut colocate_with = anchor;
    for t in &distributed {
        let with = colocate_with.as_deref().map(ident).unwrap_or_else(|| "none".to_string());
        sqlx::query("SELECT create_distributed_table($1::regclass, $2, colocate_with => $3)")
            .bind(ident(t))
            .bind(DISTRIBUTION_COLUMN)
            .bind(with)
            .execute(&mut *tx)
            .await?;
        colocate_with.get_or_insert_with(|| t.clone());
    }
    for (name, table, def) in &keys {
        sqlx::query(&format!("ALTER TABLE {} ADD CONSTRAINT {} {def}", ident(table), ident(name)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    done.referenced = referenced;
    done.distributed = distributed;
    done.foreign_keys = keys.len();
    tracing::info!(
        reference = ?done.referenced,
        distributed = ?done.distributed,
        foreign_keys = done.foreign_keys,
        "citus: made {} reference and {} distributed tables (by {DISTRIBUTION_COLUMN})",
        done.referenced.len(),
        done.distributed.len()
    );
    Ok(done)
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("spots"), "\"spots\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
