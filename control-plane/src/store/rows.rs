//! Many rows in one statement: a `VALUES` list of bound parameters. PostgreSQL gets 200 rows
//! per statement with numbered parameters (`$n`). SQLite gets up to 8,192 parameters per
//! statement, written `?`: SQLite finds the name of a numbered parameter by a linear search
//! when sqlx binds it, so a statement with `$n` parameters costs the square of their count to
//! bind (a profile of the ingest path showed most of the writer's time there), while `?`
//! parameters are bound by position. Few large statements also mean few hand-offs to sqlx's
//! SQLite worker thread (each statement is one, and the ingest path made about four per
//! rollup with ~256-parameter statements).
//!
//! Not JSON read by `json_each`, which would bind once: SQLite's text-to-double conversion is
//! not always correctly rounded (1.715373926431966e178 comes back one unit in the last place
//! off), and a stored value must be the value sent.

use sqlx::any::AnyRow;

use super::{audited, Backend, Store, StoreError};

/// One value of a row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Val<'a> {
    Text(&'a str),
    Int(i64),
    /// No statement binds a double through this path since rollups are packed; kept with its
    /// exactness test below for the next one that does.
    #[cfg_attr(not(test), allow(dead_code))]
    Real(f64),
    Bytes(&'a [u8]),
}

/// Parameters per SQLite statement, well under its limit (32,766).
const SQLITE_PARAMS: usize = 8_192;

impl Store {
    /// Runs `head VALUES (…), (…) tail` over `rows` (each of `cols` values) in as few
    /// statements as the backend allows; the `VALUES` list fits `INSERT INTO t (cols) …` and
    /// `WITH v (cols) AS (…) …`. Returns the rows the statements returned (`RETURNING`), in
    /// order.
    pub(super) async fn rows_statement(
        &self,
        conn: &mut sqlx::AnyConnection,
        head: &str,
        cols: usize,
        rows: &[Vec<Val<'_>>],
        tail: &str,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let per_statement = match self.backend {
            Backend::Postgres => 200,
            Backend::Sqlite => (SQLITE_PARAMS / cols.max(1)).max(1),
        };
        let mut out = Vec::new();
        for chunk in rows.chunks(per_statement) {
            let mut sql = format!("{head} VALUES ");
            values_list(&mut sql, self.backend, chunk.len(), cols);
            sql.push(' ');
            sql.push_str(tail);
            let mut q = sqlx::query(audited(sql));
            for row in chunk {
                if row.len() != cols {
                    return Err(StoreError::Db(format!(
                        "a row of {} values for {cols} columns",
                        row.len()
                    )));
                }
                for v in row {
                    q = match *v {
                        Val::Text(s) => q.bind(s),
                        Val::Int(i) => q.bind(i),
                        Val::Real(f) => q.bind(f),
                        Val::Bytes(b) => q.bind(b),
                    };
                }
            }
            out.extend(q.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }

    /// On PostgreSQL, locks the `hosts` rows of `ids` in the order of their ids, for a
    /// transaction about to update many hosts. A heartbeat flush and a group of rollups both
    /// update hosts by the hundred, each on its own connection, and an `UPDATE … FROM (VALUES
    /// …)` locks rows in whatever order its plan meets them: two such transactions sharing
    /// hosts deadlocked, and each deadlock cost PostgreSQL's `deadlock_timeout` (1 s) before
    /// one of them failed and was tried again (ack p99 2 s at 10,000 agents). Locked first in
    /// one order by every such transaction, they queue instead. SQLite has one writer at a
    /// time: nothing to do there.
    pub(super) async fn lock_hosts_in_order(
        &self,
        conn: &mut sqlx::AnyConnection,
        ids: &[&str],
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres || ids.is_empty() {
            return Ok(());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // Sorted by bytes before the statements split them, and by bytes within each (`COLLATE
        // "C"`, not the database's collation, which may order `web-1`/`web1x` otherwise): one
        // order for any two hosts, whichever statements they fall in.
        let rows: Vec<Vec<Val>> = ids.into_iter().map(|id| vec![Val::Text(id)]).collect();
        self.rows_statement(
            conn,
            "WITH v (id) AS (",
            1,
            &rows,
            ") SELECT hosts.id FROM hosts JOIN v ON hosts.id = v.id
               ORDER BY hosts.id COLLATE \"C\" FOR NO KEY UPDATE OF hosts",
        )
        .await?;
        Ok(())
    }
}

/// `(…),(…)`: `rows` tuples of `cols` parameters, `?` on SQLite, `$1, $2, …` on PostgreSQL.
fn values_list(sql: &mut String, backend: Backend, rows: usize, cols: usize) {
    match backend {
        Backend::Postgres => super::push_placeholders(sql, rows, cols),
        Backend::Sqlite => {
            let tuple = format!("({})", vec!["?"; cols].join(","));
            sql.reserve(rows * (tuple.len() + 1));
            for r in 0..rows {
                if r > 0 {
                    sql.push(',');
                }
                sql.push_str(&tuple);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_are_positional_on_sqlite_and_numbered_on_postgres() {
        let mut s = String::new();
        values_list(&mut s, Backend::Sqlite, 2, 3);
        assert_eq!(s, "(?,?,?),(?,?,?)");
        let mut s = String::new();
        values_list(&mut s, Backend::Postgres, 2, 3);
        assert_eq!(s, "($1,$2,$3),($4,$5,$6)");
    }

    /// Finite doubles over the whole range (bit patterns from a fixed xorshift), and some that
    /// are hard to read back from decimal text (a JSON text read by SQLite got one of them,
    /// 1.715373926431966e178, one unit in the last place off).
    fn doubles() -> Vec<f64> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut out = vec![
            0.1,
            0.2 + 0.1,
            5.0,
            -0.0,
            1e-310,
            f64::MIN_POSITIVE,
            f64::MAX,
            -f64::MAX,
            1.715_373_926_431_966e178,
            f64::EPSILON,
            2.225_073_858_507_201e-308,
            9_007_199_254_740_993.0,
            123_456_789.123_456_79,
        ];
        while out.len() < 5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                out.push(f);
            }
        }
        // and ordinary metric values: percentages, rates, byte counts
        out.extend((0..1_000).map(|i| (i as f64) * 0.37 / 3.0));
        out
    }

    #[tokio::test]
    async fn sqlite_stores_many_rows_in_few_statements_exactly_as_one_row_statements_would() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&super::super::sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        let mut conn = store.pool.acquire().await.expect("connection");
        for t in ["many", "one_by_one"] {
            sqlx::query(audited(format!(
                "CREATE TABLE {t} (i BIGINT NOT NULL, name TEXT NOT NULL, v DOUBLE PRECISION NOT NULL, b BYTEA NOT NULL)"
            )))
            .execute(&mut *conn)
            .await
            .expect("create table");
        }
        let values = doubles();
        let names: Vec<String> = (0..values.len()).map(|i| format!("m{i}\"é")).collect();
        let blobs: Vec<Vec<u8>> = values.iter().map(|v| v.to_le_bytes().to_vec()).collect();
        let rows: Vec<Vec<Val>> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                vec![
                    Val::Int(i as i64),
                    Val::Text(&names[i]),
                    Val::Real(v),
                    Val::Bytes(&blobs[i]),
                ]
            })
            .collect();
        store
            .rows_statement(&mut conn, "INSERT INTO many (i, name, v, b)", 4, &rows, "")
            .await
            .expect("insert many rows per statement");
        for (i, &v) in values.iter().enumerate() {
            sqlx::query("INSERT INTO one_by_one (i, name, v, b) VALUES ($1, $2, $3, $4)")
                .bind(i as i64)
                .bind(&names[i])
                .bind(v)
                .bind(&blobs[i])
                .execute(&mut *conn)
                .await
                .expect("insert bound");
        }
        let read = |t: &'static str| {
            sqlx::query(audited(format!("SELECT i, name, v, b FROM {t} ORDER BY i")))
        };
        let many = read("many").fetch_all(&mut *conn).await.expect("read");
        let single = read("one_by_one")
            .fetch_all(&mut *conn)
            .await
            .expect("read");
        assert_eq!(many.len(), values.len());
        use sqlx::Row;
        for ((j, b), v) in many.iter().zip(&single).zip(&values) {
            let (ji, bi): (i64, i64) = (j.get("i"), b.get("i"));
            assert_eq!(ji, bi);
            let (jn, bn): (String, String) = (j.get("name"), b.get("name"));
            assert_eq!(jn, bn);
            let (jb, bb): (Vec<u8>, Vec<u8>) = (j.get("b"), b.get("b"));
            assert_eq!(jb, bb);
            assert_eq!(jb, v.to_le_bytes());
            let (jv, bv): (f64, f64) = (j.get("v"), b.get("v"));
            assert_eq!(
                jv.to_bits(),
                bv.to_bits(),
                "{v:e} read back as {jv:e} from many rows per statement and {bv:e} from one"
            );
        }
    }
}
