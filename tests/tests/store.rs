//! Storage against real SQLite files and a real PostgreSQL.

use sco_control_plane::auth::{RefreshRecord, Role, User};
use sco_control_plane::fleet::{HostInfo, Ingested, MetricRow, RollupBatch, RollupQuery};
use sco_control_plane::store::{Store, StoreError};
use sco_tests::{fresh_postgres_database, postgres_url};

fn batch(seq: i64, start: i64) -> RollupBatch {
    RollupBatch {
        seq,
        produced_at_ms: start,
        window_start_ms: start,
        window_end_ms: start + 10_000,
        metrics: ["cpu.total_pct", "mem.used_bytes"]
            .into_iter()
            .map(|m| MetricRow {
                metric: m.into(),
                device: String::new(),
                min: 1.0,
                mean: seq as f64,
                max: 9.0,
                last: seq as f64,
                count: 10,
            })
            .collect(),
        top_processes: vec![],
        outbox_dropped_total: 3,
    }
}

async fn exercise(store: Store) {
    let info = HostInfo {
        hostname: "web-1".into(),
        labels: [("env".to_string(), "prod".to_string())].into(),
        ..Default::default()
    };
    store.upsert_host("h1", &info, 1_000).await.expect("upsert");
    store
        .upsert_host("h1", &info, 2_000)
        .await
        .expect("upsert again");
    let found = store
        .hosts_by_id(&["nobody".into(), "h1".into()], i64::MAX, 2_000)
        .await
        .expect("hosts by id");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].id.as_str(), &found[0].labels),
        ("h1", &info.labels)
    );
    assert!(store
        .hosts_by_id(&[], i64::MAX, 2_000)
        .await
        .expect("no ids")
        .is_empty());

    assert_eq!(
        store
            .ingest_rollup("h1", &batch(1, 0), 5)
            .await
            .expect("ingest"),
        Ingested::Stored
    );
    assert_eq!(
        store
            .ingest_rollup("h1", &batch(2, 10_000), 5)
            .await
            .expect("ingest"),
        Ingested::Stored
    );
    // A replay (same host, same seq) changes nothing, even with other values.
    let mut replay = batch(1, 0);
    replay.metrics[0].mean = 99.0;
    assert_eq!(
        store.ingest_rollup("h1", &replay, 6).await.expect("replay"),
        Ingested::Duplicate
    );
    // The same seq from another host is another message.
    store
        .upsert_host("h2", &info, 1_000)
        .await
        .expect("upsert h2");
    assert_eq!(
        store
            .ingest_rollup("h2", &batch(1, 0), 5)
            .await
            .expect("ingest"),
        Ingested::Stored
    );

    let q = RollupQuery {
        host: "h1".into(),
        metric: Some("cpu.total_pct".into()),
        device: None,
        from_ms: 0,
        to_ms: 100_000,
        limit: 100,
    };
    let points = store.rollups(&q).await.expect("query");
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].mean, 1.0, "the replay did not overwrite");
    assert_eq!(store.stored_seqs("h1").await.expect("seqs"), vec![1, 2]);
    let limited = store
        .rollups(&RollupQuery {
            limit: 1,
            ..q.clone()
        })
        .await
        .expect("query");
    assert_eq!(limited.len(), 1);
    let window = store
        .rollups(&RollupQuery {
            from_ms: 10_000,
            ..q
        })
        .await
        .expect("query");
    assert_eq!(window.len(), 1);

    let latest = store.latest_values("h1").await.expect("latest");
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|v| v.value == 2.0 && v.ts_ms == 20_000));

    let host = store
        .host("h1", 60_000, 2_000)
        .await
        .expect("host")
        .expect("exists");
    assert_eq!(host.labels["env"], "prod");
    assert_eq!(host.last_seq, 2);
    assert_eq!(host.outbox_dropped_total, 3);
    assert!(host.connected);
    let stale = store
        .host("h1", 60_000, 10_000_000)
        .await
        .expect("host")
        .expect("exists");
    assert!(
        !stale.connected,
        "a host silent for too long shows disconnected"
    );

    let user = User {
        id: "u1".into(),
        username: "alice".into(),
        role: Role::Operator,
        created_at_ms: 1,
    };
    assert!(!store.admin_exists().await.expect("admins"));
    store.create_user(&user, "hash").await.expect("create");
    let again = User {
        id: "u2".into(),
        ..user.clone()
    };
    assert!(matches!(
        store.create_user(&again, "hash").await,
        Err(StoreError::Conflict(_))
    ));
    let (found, hash) = store
        .user_by_name("alice")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((found, hash.as_str()), (user, "hash"));
    assert!(store.ping().await);
    store.close().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    exercise(Store::connect(&url).await.expect("connect")).await;
    // Migrations are idempotent: reopening the same file works and keeps data.
    let store = Store::connect(&url).await.expect("reopen");
    assert_eq!(store.stored_seqs("h1").await.expect("seqs"), vec![1, 2]);
}

#[tokio::test]
async fn postgres_store() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    exercise(Store::connect(&url).await.expect("connect")).await;
}

fn refresh(hash: &str, family: &str, expires_at_ms: i64) -> RefreshRecord {
    RefreshRecord {
        token_hash: hash.into(),
        family_id: family.into(),
        user_id: "u1".into(),
        issued_at_ms: 0,
        expires_at_ms,
        used_at_ms: None,
        revoked_at_ms: None,
    }
}

/// Purging deletes exactly the refresh tokens expired at `now`, whatever
/// their state, and keeps the others untouched.
async fn purge_expired_refresh_tokens(store: Store) {
    let now = 1_000_000;
    for r in [
        refresh("expired-unused", "f1", now - 500_000),
        refresh("expired-used", "f2", now - 1),
        refresh("expired-revoked", "f3", now - 1),
        refresh("expires-now", "f4", now),
        refresh("live", "f5", now + 1),
        refresh("live-revoked", "f6", now + 500_000),
    ] {
        store.insert_refresh_token(&r).await.expect("insert");
    }
    assert!(store
        .rotate_refresh_token("expired-used", &refresh("successor", "f2", now + 1), 10)
        .await
        .expect("rotate"));
    for family in ["f3", "f6"] {
        assert_eq!(
            store
                .revoke_refresh_family(family, 20)
                .await
                .expect("revoke"),
            1
        );
    }

    assert_eq!(store.purge_refresh_tokens(now).await.expect("purge"), 4);
    for gone in [
        "expired-unused",
        "expired-used",
        "expired-revoked",
        "expires-now",
    ] {
        assert!(
            store.refresh_token(gone).await.expect("get").is_none(),
            "{gone} is purged"
        );
    }
    for (kept, revoked) in [
        ("live", None),
        ("live-revoked", Some(20)),
        ("successor", None),
    ] {
        let r = store
            .refresh_token(kept)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{kept} is kept"));
        assert_eq!(r.revoked_at_ms, revoked, "{kept} is unchanged");
        assert_eq!(r.used_at_ms, None, "{kept} is unchanged");
    }
    assert_eq!(
        store.purge_refresh_tokens(now).await.expect("purge again"),
        0,
        "nothing left to purge"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_refresh_token_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    purge_expired_refresh_tokens(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test]
async fn postgres_refresh_token_purge() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    purge_expired_refresh_tokens(Store::connect(&url).await.expect("connect")).await;
}

/// Fleet leases: at most `max` requests of a rule hold one at a time, across
/// replicas (`other` is a second connection pool on the same database, as a
/// second control-plane replica has); expired or released slots are free
/// again; a request that claims twice keeps one slot.
async fn lease_slots(store: Store, other: Store) {
    const RULE: &str = "guard/tidy";
    let now = 1_000_000;
    let until = now + 900_000;
    for (id, want) in [("a1", true), ("a2", true), ("a3", false)] {
        let got = store
            .claim_lease(RULE, 2, id, until, now)
            .await
            .expect("claim");
        assert_eq!(got, want, "{id}");
    }
    assert!(
        store
            .claim_lease(RULE, 2, "a1", until + 1, now)
            .await
            .expect("claim again"),
        "a holder keeps its slot"
    );
    assert!(
        !other
            .claim_lease(RULE, 2, "a3", until, now)
            .await
            .expect("claim"),
        "the claim again took no second slot, and the other replica sees both taken"
    );
    assert!(
        store
            .claim_lease("other/rule", 1, "b1", until, now)
            .await
            .expect("claim"),
        "rules do not share slots"
    );
    store.release_lease("a1").await.expect("release");
    assert!(other
        .claim_lease(RULE, 2, "a3", until, now)
        .await
        .expect("claim after release"));
    // A request that is not running (here: none stored at all) gives its lease back.
    store
        .release_lease_unless_running("a3")
        .await
        .expect("release unless running");
    assert!(store
        .claim_lease(RULE, 2, "a5", until, now)
        .await
        .expect("claim after a release unless running"));
    store.release_lease("a5").await.expect("release");
    assert!(other
        .claim_lease(RULE, 2, "a3", until, now)
        .await
        .expect("claim again"));
    assert!(!store
        .claim_lease(RULE, 2, "a4", until, until - 1)
        .await
        .expect("claim"));
    assert!(
        store
            .claim_lease(RULE, 2, "a4", until * 2, until)
            .await
            .expect("claim after expiry"),
        "an expired slot is free"
    );

    // Many requests at once from two replicas: exactly `max` win.
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..24 {
        let s = if i % 2 == 0 { &store } else { &other }.clone();
        claims.spawn(async move {
            s.claim_lease("burst/rule", 3, &format!("c{i}"), until, now)
                .await
                .expect("claim")
        });
    }
    let won = claims.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 3);
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn sqlite_lease_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    let store = Store::connect(&url).await.expect("connect");
    let other = Store::connect(&url).await.expect("connect again");
    lease_slots(store, other).await;
}

#[tokio::test]
async fn postgres_lease_slots() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    let store = Store::connect(&url).await.expect("connect");
    let other = Store::connect(&url).await.expect("connect again");
    lease_slots(store, other).await;
}

#[tokio::test]
async fn bad_database_url_is_a_clear_error() {
    let err = Store::connect("mysql://user:secret@host/db")
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("mysql://***@host/db"), "{err}");
    assert!(!err.contains("secret"));
}

/// The lease on fleet-wide periodic work: one holder at a time, renewed by its holder, taken
/// over by another only once it has expired.
async fn leases(store: Store) {
    assert!(store
        .try_lease("ticks", "a", 1_000, 5_000)
        .await
        .expect("take"));
    assert!(!store
        .try_lease("ticks", "b", 2_000, 5_000)
        .await
        .expect("refused"));
    assert!(store
        .try_lease("ticks", "a", 5_000, 5_000)
        .await
        .expect("renew"));
    // a's lease now runs to 10 000: b waits until then
    assert!(!store
        .try_lease("ticks", "b", 9_999, 5_000)
        .await
        .expect("still a's"));
    assert!(store
        .try_lease("ticks", "b", 10_001, 5_000)
        .await
        .expect("taken over"));
    assert!(!store
        .try_lease("ticks", "a", 10_002, 5_000)
        .await
        .expect("a lost it"));
    // leases are per name
    assert!(store
        .try_lease("other", "a", 10_002, 5_000)
        .await
        .expect("other lease"));
}

#[tokio::test]
async fn sqlite_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    leases(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test]
async fn postgres_leases() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    leases(Store::connect(&url).await.expect("connect")).await;
}

/// Rollup retention: windows older than the age go with their claims, in batches, the newest
/// window of each host stays; a sweep runs on one replica of the fleet only (the lease holder).
async fn rollup_retention(store: Store, other: Store) {
    use sco_control_plane::fleet::Fleet;
    use sco_control_plane::store::PurgedRollups;
    use sco_control_plane::telemetry::Telemetry;
    use std::sync::Arc;
    use std::time::Duration;

    for h in ["h1", "h2"] {
        store
            .upsert_host(h, &HostInfo::default(), 1)
            .await
            .expect("host");
    }
    let windows: Vec<RollupBatch> = (1..=2_500).map(|s| batch(s, s * 10_000)).collect();
    for group in windows.chunks(500) {
        let items: Vec<(&str, &RollupBatch)> = group.iter().map(|b| ("h1", b)).collect();
        store.ingest_rollups(&items, 5).await.expect("group");
    }
    for s in 1..=3 {
        store
            .ingest_rollup("h2", &batch(s, s * 10_000), 5)
            .await
            .expect("h2");
    }
    // windows that began before 20 000 000 ms: seq 1..=1999, in batches of 500
    let purged = store
        .purge_host_rollups("h1", 20_000_000, 500)
        .await
        .expect("purge");
    assert_eq!(
        purged,
        PurgedRollups {
            windows: 1_999,
            claims: 1_999,
            legacy_rows: 0
        }
    );
    let seqs = store.stored_seqs("h1").await.expect("seqs");
    assert_eq!(seqs, (2_000..=2_500).collect::<Vec<i64>>());
    let q = RollupQuery {
        host: "h1".into(),
        metric: Some("cpu.total_pct".into()),
        device: None,
        from_ms: 0,
        to_ms: i64::MAX,
        limit: 10_000,
    };
    let points = store.rollups(&q).await.expect("points");
    assert_eq!(points.len(), 501);
    assert_eq!(points[0].window_start_ms, 20_000_000);
    // everything is older than "now": the newest window stays, with its claim
    let purged = store
        .purge_host_rollups("h1", i64::MAX, 2_000)
        .await
        .expect("purge all");
    assert_eq!((purged.windows, purged.claims), (500, 500));
    assert_eq!(store.stored_seqs("h1").await.expect("seqs"), [2_500]);
    let latest = store.latest_values("h1").await.expect("latest");
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|v| v.value == 2_500.0));
    // a resend of a purged window is stored again (its claim went with it), and goes again
    assert_eq!(
        store
            .ingest_rollup("h1", &batch(7, 70_000), 9)
            .await
            .expect("resend"),
        Ingested::Stored
    );
    let again = store
        .purge_host_rollups("h1", i64::MAX, 2_000)
        .await
        .expect("purge the resend");
    assert_eq!((again.windows, again.claims), (1, 1));
    assert_eq!(store.stored_seqs("h1").await.expect("seqs"), [2_500]);
    // a host with nothing to purge
    assert_eq!(
        store
            .purge_host_rollups("nobody", i64::MAX, 2_000)
            .await
            .expect("unknown host"),
        PurgedRollups::default()
    );

    // two replicas sweeping every 100 ms with a one-day age: h2's two old windows go once,
    // on whichever replica holds the lease
    let a = Arc::new(Telemetry::default());
    let b = Arc::new(Telemetry::default());
    let day = Some(Duration::from_secs(86_400));
    let fa = Fleet::builder(store.clone(), a.clone())
        .with_rollup_retention(day)
        .build();
    let fb = Fleet::builder(other.clone(), b.clone())
        .with_rollup_retention(day)
        .build();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ra = fa.retention.clone();
    let rb = fb.retention.clone();
    let (sa, sb) = (stop.clone(), stop.clone());
    let ta = tokio::spawn(async move { ra.run(Duration::from_millis(100), sa).await });
    let tb = tokio::spawn(async move { rb.run(Duration::from_millis(100), sb).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stored_seqs("h2").await.expect("seqs") != [3] {
        assert!(
            std::time::Instant::now() < deadline,
            "h2's old windows were not purged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop_tx.send(true).expect("stop");
    ta.await.expect("a ends");
    tb.await.expect("b ends");
    let (na, nb) = (a.rollups_purged.get(), b.rollups_purged.get());
    assert_eq!(
        na + nb,
        2,
        "each window is purged once: replica a {na}, replica b {nb}"
    );
    assert!(na == 0 || nb == 0, "one replica sweeps: a {na}, b {nb}");
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn sqlite_rollup_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    rollup_retention(
        Store::connect(&url).await.expect("connect"),
        Store::connect(&url).await.expect("second pool"),
    )
    .await;
}

#[tokio::test]
async fn postgres_rollup_retention() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    rollup_retention(
        Store::connect(&url).await.expect("connect"),
        Store::connect(&url).await.expect("second pool"),
    )
    .await;
}

/// Policy statuses stored as a group: each (host, seq) once, with its audit entry in the same
/// transaction; a host reporting twice on one policy in a group ends as the later report
/// leaves it; a replay is a duplicate and writes no second audit entry.
async fn policy_status_groups(store: Store) {
    use sco_control_plane::fleet::{AuditEntry, AuditQuery, PolicyStatusIn};

    let status = |seq: i64, name: &str, revision: i64, applied: bool| PolicyStatusIn {
        seq,
        produced_at_ms: 1_000 * seq,
        name: name.into(),
        revision,
        applied,
        error: if applied { String::new() } else { "bad".into() },
        active_revision: if applied { revision } else { revision - 1 },
    };
    let audit = |host: &str, seq: i64| AuditEntry {
        id: format!("audit-{host}-{seq}"),
        at_ms: 5,
        actor: format!("agent:{host}"),
        action: "policy.applied".into(),
        host_id: host.into(),
        result: "applied".into(),
        detail: serde_json::json!({ "seq": seq }),
    };
    let (a1, a2, a3, b1) = (
        status(1, "p", 1, true),
        status(2, "p", 2, false),
        status(3, "q", 1, true),
        status(1, "p", 1, true),
    );
    let items = [("a", &a1), ("a", &a2), ("a", &a3), ("b", &b1), ("a", &a1)];
    let audits: Vec<AuditEntry> = items
        .iter()
        .enumerate()
        .map(|(i, (h, s))| audit(h, s.seq * 10 + i as i64))
        .collect();
    let got = store
        .record_policy_statuses(&items, &audits, 7)
        .await
        .expect("group");
    use Ingested::{Duplicate, Stored};
    assert_eq!(got, [Stored, Stored, Stored, Stored, Duplicate]);
    let p = store.policy_statuses("p").await.expect("statuses");
    let a = p.iter().find(|s| s.host_id == "a").expect("a on p");
    // the later report (refused revision 2) with the time revision 1 was applied at
    assert_eq!(
        (
            a.revision,
            a.applied_revision,
            a.applied_at_ms,
            a.error.as_str()
        ),
        (2, 1, 1_000, "bad")
    );
    assert_eq!(p.len(), 2);
    let q = AuditQuery {
        host: Some("a".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.audit_log(&q).await.expect("audit").len(), 3);
    // a replay of the whole group: all duplicates, nothing written
    let again = store
        .record_policy_statuses(&items, &audits, 8)
        .await
        .expect("replay");
    assert!(again.iter().all(|r| *r == Duplicate));
    assert_eq!(store.audit_log(&q).await.expect("audit").len(), 3);
    // entries that do not match the statuses are refused, and nothing is stored
    assert!(store
        .record_policy_statuses(&[("c", &b1)], &[], 9)
        .await
        .is_err());
    assert!(store.stored_seqs("c").await.expect("seqs").is_empty());
    store.close().await;
}

#[tokio::test]
async fn sqlite_policy_status_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    policy_status_groups(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test]
async fn postgres_policy_status_groups() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    policy_status_groups(Store::connect(&url).await.expect("connect")).await;
}

/// Failed logins at the same moment (one client guessing, or a scanner) each count, and none
/// fails with "database is locked": every one is recorded and the lock follows the count.
async fn login_failures_at_once(store: Store) {
    let n = 24;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..n {
        let store = store.clone();
        all.spawn(async move {
            store
                .record_login_failure("addr:203.0.113.9", 600_000, |f| i64::from(f) * 1_000, 5_000)
                .await
        });
    }
    while let Some(r) = all.join_next().await {
        let r = r.expect("task");
        assert!(r.is_ok(), "{r:?}");
    }
    // the last of the n failures locks for n seconds from the last failure
    let wait = store
        .login_lock_wait(&["addr:203.0.113.9".to_string()], 5_000)
        .await
        .expect("read");
    assert_eq!(wait, Some(n * 1_000));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_login_failures_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    login_failures_at_once(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_login_failures_at_once() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    login_failures_at_once(Store::connect(&url).await.expect("connect")).await;
}

fn runbook(id: &str, updated_ms: i64) -> sco_control_plane::runbooks::Runbook {
    sco_control_plane::runbooks::Runbook {
        id: id.into(),
        revision: 0,
        title: format!("Runbook {id}"),
        tags: vec!["disk".into()],
        conditions: Default::default(),
        body: "Look at the disk.".into(),
        updated_ms,
        updated_by: "alice".into(),
    }
}

/// Runbooks created and deleted at the same moment (an import, two operators) each succeed
/// and none fails with "database is locked": a transaction that read first (the last
/// revision, the runbook to delete) and wrote after could not take SQLite's write lock once
/// another connection had written in between. Of one id, exactly one create and one delete
/// win.
async fn runbooks_at_once(store: Store) {
    let n = 24;
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        all.spawn(async move { store.create_runbook(&runbook(&format!("rb-{i}"), i)).await });
    }
    while let Some(r) = all.join_next().await {
        let r = r.expect("task");
        let created = r.expect("create").expect("a new id is created");
        assert_eq!(created.revision, 1, "{created:?}");
    }
    assert_eq!(store.runbooks().await.expect("list").len(), n as usize);
    // one id, n times at once: one is created, the others find it there
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        all.spawn(async move { store.create_runbook(&runbook("shared", i)).await });
    }
    let mut created = Vec::new();
    while let Some(r) = all.join_next().await {
        if let Some(rb) = r.expect("task").expect("create") {
            created.push(rb);
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].revision, 1);
    // every runbook deleted at once, and the shared one n times at once: one delete of each
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let (one, shared) = (store.clone(), store.clone());
        all.spawn(async move { one.delete_runbook(&format!("rb-{i}")).await });
        all.spawn(async move { shared.delete_runbook("shared").await });
    }
    let mut deleted = Vec::new();
    while let Some(r) = all.join_next().await {
        if let Some(rb) = r.expect("task").expect("delete") {
            deleted.push(rb.id);
        }
    }
    deleted.sort_unstable();
    let mut expected: Vec<String> = (0..n).map(|i| format!("rb-{i}")).collect();
    expected.push("shared".into());
    expected.sort_unstable();
    assert_eq!(deleted, expected);
    assert!(store.runbooks().await.expect("list").is_empty());
    // made again, each continues its history
    let again = store
        .create_runbook(&runbook("rb-0", 99))
        .await
        .expect("create again")
        .expect("deleted id is free");
    assert_eq!(again.revision, 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_runbooks_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    runbooks_at_once(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_runbooks_at_once() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    runbooks_at_once(Store::connect(&url).await.expect("connect")).await;
}

/// Remediations of one rule choosing among its candidates at the same moment (a storm on
/// many hosts) each read and record the candidates' tallies, and none fails with "database
/// is locked" (the tallies were read, then written, in one transaction). A candidate the
/// rule no longer lists is dropped; learnt counts are kept.
async fn candidate_tallies_at_once(store: Store) {
    use sco_control_plane::domain::choice::Tally;

    let rule = "disk/cleanup";
    let contexts = 6;
    let candidates: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|a| format!("{{\"action\":\"{a}\"}}"))
        .collect();
    for c in 0..contexts {
        let context = format!("ctx-{c}");
        // learnt before: a success of the first candidate, a failure of one now gone
        store
            .learn_outcome(rule, &context, &candidates[0], 0, 3, true, 1)
            .await
            .expect("learn");
        store
            .learn_outcome(rule, &context, "{\"action\":\"old\"}", 3, 4, false, 1)
            .await
            .expect("learn");
    }
    let n = 24;
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let (store, candidates) = (store.clone(), candidates.clone());
        all.spawn(async move {
            let context = format!("ctx-{}", i % contexts);
            store
                .candidate_tallies(rule, &context, &candidates, 10 + i)
                .await
        });
    }
    while let Some(r) = all.join_next().await {
        let tallies = r.expect("task").expect("tallies");
        assert_eq!(
            tallies,
            [
                Tally {
                    successes: 1,
                    failures: 0
                },
                Tally::default(),
                Tally::default()
            ]
        );
    }
    let rows = store.preference_rows(Some(rule), None).await.expect("rows");
    assert_eq!(rows.len(), contexts as usize * candidates.len(), "{rows:?}");
    for c in 0..contexts {
        let context = format!("ctx-{c}");
        let of: Vec<(i64, i64, String)> = rows
            .iter()
            .filter(|r| r.context == context)
            .map(|r| (r.position, r.of, r.action.to_string()))
            .collect();
        let expected: Vec<(i64, i64, String)> = candidates
            .iter()
            .enumerate()
            .map(|(p, a)| (p as i64, 3, a.clone()))
            .collect();
        assert_eq!(of, expected, "{context}");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_candidate_tallies_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    candidate_tallies_at_once(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_candidate_tallies_at_once() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    candidate_tallies_at_once(Store::connect(&url).await.expect("connect")).await;
}

/// Remediations of one rule in one context at the same moment, while its candidates change
/// (a policy revision rolling out: some hosts still run the old list, others the new, the
/// same actions in another order): each call drops and writes the same rows in its own
/// order. On PostgreSQL two calls that locked those rows in the order of their own lists
/// (and deleted first the rows their list lacked) deadlocked; in one order of the rows they
/// queue. The tally of the candidate every list names is read by all of them; that one sorts
/// in the middle, so the calls do not simply queue at their first row.
async fn candidate_tallies_changing(store: Store) {
    use sco_control_plane::domain::choice::Tally;

    let rule = "disk/cleanup";
    let context = "ctx";
    let key = |a: &str| format!("{{\"action\":\"{a}\"}}");
    // overlapping lists, some the reverse of others; every one names "m"
    let lists: Vec<Vec<String>> = [
        &["a", "b", "m", "d"][..],
        &["d", "m", "b", "a"],
        &["c", "m", "e"],
        &["e", "d", "m", "b"],
        &["b", "m"],
        &["m", "e", "c", "a"],
    ]
    .iter()
    .map(|l| l.iter().map(|a| key(a)).collect())
    .collect();
    store
        .learn_outcome(rule, context, &key("m"), 2, 4, true, 1)
        .await
        .expect("learn");
    let rounds = 6;
    let per_round = 24;
    for round in 0..rounds {
        // candidates no list names, learnt meanwhile: every round has rows to drop, before
        // and after the shared one
        for old in ["aa", "old"] {
            store
                .learn_outcome(rule, context, &key(old), 4, 5, false, 1)
                .await
                .expect("learn");
        }
        let mut all = tokio::task::JoinSet::new();
        for i in 0..per_round {
            let (store, list) = (store.clone(), lists[(i + round) % lists.len()].clone());
            all.spawn(async move {
                let tallies = store
                    .candidate_tallies(rule, context, &list, 10 + i as i64)
                    .await;
                (list, tallies)
            });
        }
        while let Some(r) = all.join_next().await {
            let (list, tallies) = r.expect("task");
            let tallies = tallies.unwrap_or_else(|e| panic!("round {round}, {list:?}: {e}"));
            let expected: Vec<Tally> = list
                .iter()
                .map(|a| {
                    let learnt = a == &key("m");
                    Tally {
                        successes: learnt.into(),
                        failures: 0,
                    }
                })
                .collect();
            assert_eq!(tallies, expected, "round {round}, {list:?}");
        }
    }
    // once the calls are over, the next one leaves its list alone, in its order
    let last = &lists[1];
    store
        .candidate_tallies(rule, context, last, 99)
        .await
        .expect("tallies");
    let rows: Vec<(i64, i64, String)> = store
        .preference_rows(Some(rule), Some(context))
        .await
        .expect("rows")
        .into_iter()
        .map(|r| (r.position, r.of, r.action.to_string()))
        .collect();
    let expected: Vec<(i64, i64, String)> = last
        .iter()
        .enumerate()
        .map(|(p, a)| (p as i64, last.len() as i64, a.clone()))
        .collect();
    assert_eq!(rows, expected);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_candidate_tallies_changing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    candidate_tallies_changing(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_candidate_tallies_changing() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    candidate_tallies_changing(Store::connect(&url).await.expect("connect")).await;
}

/// An admin forgetting what a rule learnt (`DELETE /remediation/preferences`) while its
/// remediations read and write their tallies: a reset that deleted the rule's rows in the
/// order it met them on disk, against calls that lock them in the order of the actions'
/// bytes, deadlocked on PostgreSQL (one side failed). Every reset and every call succeeds,
/// and once all are done the rows are those of the last call.
async fn preferences_reset_while_learning(store: Store) {
    let rule = "disk/cleanup";
    let context = "ctx";
    let key = |a: &str| format!("{{\"action\":\"{a}\"}}");
    let lists: Vec<Vec<String>> = [
        &["a", "b", "m", "d"][..],
        &["d", "m", "b", "a"],
        &["e", "d", "m", "b", "c"],
        &["m", "e", "c", "a"],
    ]
    .iter()
    .map(|l| l.iter().map(|a| key(a)).collect())
    .collect();
    for round in 0..8 {
        // rows written in another order than their actions', so that a scan meets them so
        for (i, a) in ["m", "e", "a", "d", "c", "b"].iter().enumerate() {
            store
                .learn_outcome(rule, context, &key(a), i as i64, 6, round % 2 == 0, 1)
                .await
                .expect("learn");
        }
        let mut all = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (store, list) = (store.clone(), lists[(i + round) % lists.len()].clone());
            all.spawn(async move {
                if i % 4 == 3 {
                    let r = store.delete_preferences(Some(rule), None).await;
                    r.map(|_| ()).map_err(|e| format!("reset: {e}"))
                } else {
                    let r = store
                        .candidate_tallies(rule, context, &list, i as i64)
                        .await;
                    r.map(|_| ()).map_err(|e| format!("{list:?}: {e}"))
                }
            });
        }
        while let Some(r) = all.join_next().await {
            if let Err(e) = r.expect("task") {
                panic!("round {round}: {e}");
            }
        }
    }
    let last = &lists[0];
    store
        .candidate_tallies(rule, context, last, 99)
        .await
        .expect("tallies");
    let rows: Vec<String> = store
        .preference_rows(Some(rule), Some(context))
        .await
        .expect("rows")
        .into_iter()
        .map(|r| r.action.to_string())
        .collect();
    assert_eq!(&rows, last);
    assert_eq!(
        store
            .delete_preferences(Some(rule), Some(context))
            .await
            .expect("reset"),
        last.len() as u64
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_preferences_reset_while_learning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    preferences_reset_while_learning(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_preferences_reset_while_learning() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    preferences_reset_while_learning(Store::connect(&url).await.expect("connect")).await;
}

/// Anomaly changes of several agents stored in one transaction (an alarm storm): each opens,
/// updates or closes its own event; a change already stored, or met twice in the group, is a
/// duplicate and changes nothing.
async fn anomaly_groups(store: Store) {
    use sco_control_plane::fleet::{AnomalyChange, ChangeKind, Severity};

    let change = |seq: i64, open_seq: i64, kind: ChangeKind, score: f64| AnomalyChange {
        seq,
        produced_at_ms: 1_000 * seq,
        kind,
        open_seq,
        run_started_ms: 1,
        started_ms: 1_000 * open_seq,
        updated_ms: 1_000 * seq,
        ended_ms: (kind == ChangeKind::Closed).then_some(1_000 * seq),
        score,
        peak_score: score,
        severity: Severity::High,
        contributors: Vec::new(),
        context: Vec::new(),
        context_processes: Vec::new(),
        model: "test".into(),
        family: "cpu".into(),
        close_reason: String::new(),
        culprits: Vec::new(),
        recovered_ms: None,
    };
    // b's event was opened before the storm
    let b_open = change(1, 1, ChangeKind::Opened, 0.5);
    assert_eq!(
        store
            .ingest_anomaly("b", &b_open, 5)
            .await
            .expect("b opens"),
        Ingested::Stored
    );
    let (a_open, b_close, c_open) = (
        change(1, 1, ChangeKind::Opened, 0.9),
        change(2, 1, ChangeKind::Closed, 0.1),
        change(7, 7, ChangeKind::Opened, 0.7),
    );
    let items = [
        ("a", &a_open),
        ("b", &b_close),
        ("c", &c_open),
        ("b", &b_open),
        ("a", &a_open),
    ];
    use Ingested::{Duplicate, Stored};
    let got = store.ingest_anomalies(&items, 7).await.expect("group");
    assert_eq!(got, [Stored, Stored, Stored, Duplicate, Duplicate]);
    let event = |id: &'static str| {
        let store = &store;
        async move {
            let e = store.anomaly(id).await.expect("read").expect(id);
            (e.status, e.score, e.ended_ms)
        }
    };
    assert_eq!(event("a:1").await, ("open".to_string(), 0.9, None));
    assert_eq!(event("b:1").await, ("closed".to_string(), 0.1, Some(2_000)));
    assert_eq!(event("c:7").await, ("open".to_string(), 0.7, None));
    // the whole group again: all duplicates, nothing changed
    let again = store.ingest_anomalies(&items, 8).await.expect("replay");
    assert!(again.iter().all(|r| *r == Duplicate), "{again:?}");
    assert_eq!(event("b:1").await, ("closed".to_string(), 0.1, Some(2_000)));
    store.close().await;
}

#[tokio::test]
async fn sqlite_anomaly_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    anomaly_groups(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test]
async fn postgres_anomaly_groups() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    anomaly_groups(Store::connect(&url).await.expect("connect")).await;
}

/// A heartbeat flush and groups of rollups update the same hosts by the hundred at once, each
/// on its own connection, as the control plane does under load. On PostgreSQL two such
/// transactions that took their row locks in different orders deadlocked (one of them failed
/// after a second); every one must succeed, and each host ends with its newest sequence number.
async fn host_updates_in_parallel(store: Store) {
    use sco_control_plane::domain::HostBeat;

    // names whose byte order and a locale's collation disagree (`h-0001` and `h0002`)
    let hosts: Vec<String> = (0..600)
        .map(|i| {
            if i % 2 == 0 {
                format!("h{i:04}")
            } else {
                format!("h-{i:04}")
            }
        })
        .collect();
    for h in &hosts {
        store
            .upsert_host(h, &HostInfo::default(), 1)
            .await
            .expect("host");
    }
    let rounds = 12_i64;
    let beats = {
        let (store, hosts) = (store.clone(), hosts.clone());
        tokio::spawn(async move {
            for round in 0..rounds {
                // every host, in an order of its own each round
                let mut order: Vec<&String> = hosts.iter().collect();
                order.rotate_left((round as usize * 97) % hosts.len());
                order.reverse();
                let beats: Vec<HostBeat> = order
                    .into_iter()
                    .map(|h| HostBeat {
                        host_id: h.clone(),
                        seen_ms: 1_000 + round,
                        outbox_dropped_total: 0,
                        cert_not_after_ms: 0,
                        detector: None,
                    })
                    .collect();
                store.touch_hosts(&beats).await.expect("heartbeat flush");
            }
        })
    };
    let groups: Vec<_> = (0..2)
        .map(|writer| {
            let (store, hosts) = (store.clone(), hosts.clone());
            tokio::spawn(async move {
                for round in 1..=rounds {
                    let seq = round * 2 + writer;
                    let b = batch(seq, seq * 10_000);
                    let mut order: Vec<&String> = hosts.iter().collect();
                    order.rotate_left((round as usize * 131 + writer as usize * 300) % hosts.len());
                    for group in order.chunks(256) {
                        let items: Vec<(&str, &RollupBatch)> =
                            group.iter().map(|h| (h.as_str(), &b)).collect();
                        store.ingest_rollups(&items, 5).await.expect("rollup group");
                    }
                }
            })
        })
        .collect();
    beats.await.expect("flush task");
    for g in groups {
        g.await.expect("group task");
    }
    for h in hosts.iter().step_by(37) {
        let seqs = store.stored_seqs(h).await.expect("seqs");
        assert_eq!(seqs.len(), 2 * rounds as usize, "{h}: {seqs:?}");
        assert_eq!(seqs.last(), Some(&(rounds * 2 + 1)), "{h}");
        let host = store
            .host(h, i64::MAX, 0)
            .await
            .expect("read")
            .expect("host");
        assert_eq!(host.last_seq, rounds * 2 + 1, "{h}");
        assert!(
            host.last_seen_ms >= 1_000 + rounds - 1,
            "{h}: {}",
            host.last_seen_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_host_updates_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    host_updates_in_parallel(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_host_updates_in_parallel() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    host_updates_in_parallel(Store::connect(&url).await.expect("connect")).await;
}

/// The open events of the fleet counted per host, family and severity in one query, with how
/// many of them recovered and are held: not one still firing, one that fired again after it
/// recovered, or a closed one (closed after it recovered, or by an agent restart while held).
async fn open_counts_with_held(store: Store) {
    use sco_control_plane::fleet::{AnomalyChange, ChangeKind, Severity};

    let change = |(seq, open_seq, kind): (i64, i64, ChangeKind),
                  family: &str,
                  severity: Severity,
                  score: f64,
                  recovered_ms: Option<i64>| AnomalyChange {
        seq,
        produced_at_ms: 1_000 * seq,
        kind,
        open_seq,
        run_started_ms: 1,
        started_ms: 1_000 * open_seq,
        updated_ms: 1_000 * seq,
        ended_ms: (kind == ChangeKind::Closed).then_some(1_000 * seq),
        score,
        peak_score: score,
        severity,
        contributors: Vec::new(),
        context: Vec::new(),
        context_processes: Vec::new(),
        model: "test".into(),
        family: family.into(),
        close_reason: String::new(),
        culprits: Vec::new(),
        recovered_ms,
    };
    use ChangeKind::{Closed, Opened, Updated};
    use Severity::{High, Low, Medium};
    let held = Some(500);
    let changes = [
        // a: cpu high twice, one held; cpu low held; memory medium fired again after it
        // recovered; disk_space low closed after it recovered
        ("a", change((1, 1, Opened), "cpu", High, 0.9, None)),
        ("a", change((2, 1, Updated), "cpu", High, 0.4, held)),
        ("a", change((3, 3, Opened), "cpu", High, 0.8, None)),
        ("a", change((4, 4, Opened), "cpu", Low, 0.3, None)),
        ("a", change((5, 4, Updated), "cpu", Low, 0.2, held)),
        ("a", change((6, 6, Opened), "memory", Medium, 0.6, None)),
        ("a", change((7, 6, Updated), "memory", Medium, 0.5, held)),
        ("a", change((8, 6, Updated), "memory", Medium, 0.7, None)),
        ("a", change((9, 9, Opened), "disk_space", Low, 0.3, None)),
        ("a", change((10, 9, Updated), "disk_space", Low, 0.2, held)),
        ("a", change((11, 9, Closed), "disk_space", Low, 0.1, held)),
        // b: both events held; c: one held, then closed by its agent's restart
        ("b", change((1, 1, Opened), "disk_io", Medium, 0.6, None)),
        ("b", change((2, 1, Updated), "disk_io", Medium, 0.3, held)),
        ("b", change((3, 3, Opened), "disk_io", Medium, 0.7, None)),
        ("b", change((4, 3, Updated), "disk_io", Medium, 0.2, held)),
        ("c", change((1, 1, Opened), "network", High, 0.9, None)),
        ("c", change((2, 1, Updated), "network", High, 0.4, held)),
    ];
    for (host, c) in &changes {
        store.ingest_anomaly(host, c, 5).await.expect("anomaly");
    }
    let orphans = store
        .close_orphaned_anomalies("c", 2, 6)
        .await
        .expect("restart");
    assert_eq!(orphans, 1);

    let counts = store.open_anomaly_counts().await.expect("counts");
    let got: Vec<(&str, &str, Severity, i64, i64, f64)> = counts
        .iter()
        .map(|o| {
            (
                o.host_id.as_str(),
                o.family.as_str(),
                o.severity,
                o.count,
                o.held,
                o.max_score,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", "cpu", High, 2, 1, 0.8),
            ("a", "cpu", Low, 1, 1, 0.2),
            ("a", "memory", Medium, 1, 0, 0.7),
            ("b", "disk_io", Medium, 2, 2, 0.3),
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_open_counts_with_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sco_control_plane::store::sqlite_url(dir.path());
    open_counts_with_held(Store::connect(&url).await.expect("connect")).await;
}

#[tokio::test]
async fn postgres_open_counts_with_held() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_postgres_database(&admin).await;
    open_counts_with_held(Store::connect(&url).await.expect("connect")).await;
}
