//! No data lost, none duplicated: through a control-plane outage and
//! through an agent killed with SIGKILL.

use std::time::Duration;

use sco_tests::{duplicated_windows, stored_windows, wait_for, Db, Sandbox};

/// Sequence numbers are 1..=n with no gap.
fn assert_contiguous(windows: &[(i64, i64, i64)]) {
    for (i, (seq, _, _)) in windows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "gap in sequence numbers: {windows:?}");
    }
}

async fn control_plane_outage(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let mut cp = sb.start_control_plane();
    let _agent = sb.start_agent("agent-1");
    let pool = sb.db().await;
    let before = wait_for("three stored rollups", || async {
        let w = stored_windows(&pool, "agent-1").await;
        (w.len() >= 3).then_some(w.len())
    })
    .await;

    assert!(cp.terminate().success());
    // The agent keeps collecting: about five rollups are produced while the
    // control plane is down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = stored_windows(&pool, "agent-1").await.len();
    let _cp = sb.start_control_plane();

    let windows = wait_for("the outage's rollups to arrive", || async {
        let w = stored_windows(&pool, "agent-1").await;
        (w.len() >= during + 7).then_some(w)
    })
    .await;
    assert!(during >= before);
    assert_contiguous(&windows);
    // The agent never restarted, so its windows tile time without a hole:
    // every window produced during the outage is there.
    for pair in windows.windows(2) {
        assert_eq!(pair[0].2, pair[1].1, "time gap between windows: {pair:?}");
    }
    assert_eq!(
        duplicated_windows(&pool, "agent-1").await,
        Vec::<i64>::new()
    );
    let replayed =
        sqlx::query("SELECT COUNT(*) AS n FROM agent_messages WHERE host_id = 'agent-1'")
            .fetch_one(&pool)
            .await
            .expect("count");
    let n: i64 = sqlx::Row::get(&replayed, "n");
    assert_eq!(n as usize, windows.len(), "one message row per rollup");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_outage_sqlite() {
    control_plane_outage(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_outage_postgres() {
    control_plane_outage(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_with_sigkill_loses_and_duplicates_nothing() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let mut agent = sb.start_agent("agent-1");
    let pool = sb.db().await;
    let before = wait_for("three stored rollups", || async {
        let w = stored_windows(&pool, "agent-1").await;
        (w.len() >= 3).then_some(w.len())
    })
    .await;
    agent.kill();
    let acknowledged = stored_windows(&pool, "agent-1").await;
    let _agent = sb.start_agent("agent-1");
    let windows = wait_for("rollups after the restart", || async {
        let w = stored_windows(&pool, "agent-1").await;
        (w.len() >= before + 4).then_some(w)
    })
    .await;
    // Everything acknowledged before the kill is still there, unchanged,
    // and numbering resumed where it stopped.
    assert_eq!(&windows[..acknowledged.len()], &acknowledged[..]);
    assert_contiguous(&windows);
    assert_eq!(
        duplicated_windows(&pool, "agent-1").await,
        Vec::<i64>::new()
    );
}
