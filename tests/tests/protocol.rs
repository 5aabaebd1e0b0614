//! The agent protocol seen from a hand-written client with a valid
//! certificate: acknowledgements, replays, and invalid messages that are
//! recorded and acknowledged instead of blocking the stream forever.

use std::time::Duration;

use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{
    agent_message, control_message, AgentMessage, AnomalyEvent, Hello, MetricRollup, MetricSummary,
};
use sco_tests::{Db, Sandbox};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn rollup(seq: u64, value: f64) -> AgentMessage {
    AgentMessage {
        seq,
        produced_at_ms: 1,
        body: Some(agent_message::Body::Rollup(MetricRollup {
            window_start_ms: seq as i64 * 1000,
            window_end_ms: seq as i64 * 1000 + 1000,
            metrics: vec![MetricSummary {
                name: "cpu.total_pct".into(),
                device: String::new(),
                min: value,
                mean: value,
                max: value,
                last: value,
                count: 1,
            }],
            top_processes: vec![],
            outbox_dropped_total: 0,
        })),
    }
}

async fn next_ack(inbound: &mut tonic::Streaming<sco_proto::v1::ControlMessage>) -> u64 {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a reply within 10 s")
            .expect("stream stays up")
            .expect("stream not closed");
        if let Some(control_message::Body::Ack(a)) = m.body {
            return a.up_to_seq;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_replays_and_invalid_messages() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let channel = sb.agent_channel("proto-agent").await;
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentMessage {
        seq: 0,
        produced_at_ms: 0,
        body: Some(agent_message::Body::Hello(Hello::default())),
    })
    .await
    .expect("hello");
    let mut inbound = AgentServiceClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(rollup(1, 10.0)).await.expect("send");
    assert_eq!(next_ack(&mut inbound).await, 1);
    // A non-finite value: recorded as rejected, acknowledged, stream stays up.
    tx.send(rollup(2, f64::NAN)).await.expect("send");
    assert_eq!(next_ack(&mut inbound).await, 2);
    let bad_event = AgentMessage {
        seq: 3,
        produced_at_ms: 1,
        body: Some(agent_message::Body::Anomaly(AnomalyEvent {
            kind: 1,
            open_seq: 3,
            severity: "apocalyptic".into(),
            ..Default::default()
        })),
    };
    tx.send(bad_event).await.expect("send");
    assert_eq!(next_ack(&mut inbound).await, 3);
    tx.send(rollup(4, 20.0)).await.expect("send");
    assert_eq!(next_ack(&mut inbound).await, 4);
    // A replay of a stored message is acknowledged again and stored once.
    tx.send(rollup(4, 99.0)).await.expect("send");
    assert_eq!(next_ack(&mut inbound).await, 4);

    let pool = sb.db().await;
    let rows = sqlx::query(
        "SELECT seq, kind FROM agent_messages WHERE host_id = 'proto-agent' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .expect("query");
    let kinds: Vec<(i64, String)> = rows
        .iter()
        .map(|r| (sqlx::Row::get(r, "seq"), sqlx::Row::get(r, "kind")))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, "rollup".to_string()),
            (2, "rejected".to_string()),
            (3, "rejected".to_string()),
            (4, "rollup".to_string())
        ]
    );
    let windows = sco_tests::stored_windows(&pool, "proto-agent").await;
    assert_eq!(windows.len(), 2);
    let metrics = reqwest::get(format!("{}/metrics", sb.base_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("sco_ingest_rejected_total 2"), "{metrics}");
    assert!(
        metrics.contains("sco_ingest_duplicates_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn score_a_posted_window() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let token = sb.admin_token().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anomaly", sb.base_url());
    let mut rows: Vec<Vec<f64>> = (0..60)
        .map(|i| vec![10.0 + (i % 3) as f64, 40.0 + (i % 2) as f64, 1.0])
        .collect();
    for row in rows.iter_mut().skip(50).take(5) {
        row[0] = 95.0;
    }
    let body = serde_json::json!({"metrics": ["cpu", "mem", "load"], "rows": rows});
    let r = http
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    let scores = v["result"]["scores"].as_array().expect("scores");
    assert_eq!(scores.len(), 60);
    assert!(scores
        .iter()
        .all(|s| s.as_f64().is_some_and(|s| (0.0..=1.0).contains(&s))));
    let worst = v["result"]["worst_row"].as_u64().expect("worst row") as usize;
    assert!(
        (50..58).contains(&worst),
        "worst row {worst} is in the spike"
    );
    assert_eq!(v["result"]["contributors"][0]["metric"], "cpu");

    let cases = [
        (
            serde_json::json!({"metrics": ["a", "b"], "rows": [[1.0, 2.0], [1.0]]}),
            "row",
        ),
        (
            serde_json::json!({"metrics": ["a"], "rows": [[1.0], [2.0]]}),
            "rows",
        ),
        (serde_json::json!({"metrics": [], "rows": []}), "metric"),
        (
            serde_json::json!({"metrics": ["a"], "rows": [[1.0]], "extra": true}),
            "extra",
        ),
        (
            serde_json::json!({"metrics": ["a"], "rows": "nope"}),
            "rows",
        ),
    ];
    for (body, word) in cases {
        let r = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "{body}");
        let v: serde_json::Value = r.json().await.expect("json");
        let msg = v["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(msg.contains(word), "{body}: {msg}");
    }
    // Windows larger than the general 64 KiB body limit are accepted here.
    let big: Vec<Vec<f64>> = (0..4000).map(|i| vec![(i % 7) as f64, 1.0, 2.0]).collect();
    let r = http
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"metrics": ["a", "b", "c"], "rows": big}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let r = http
        .post(&url)
        .json(&body_without_token())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

fn body_without_token() -> serde_json::Value {
    serde_json::json!({"metrics": ["a"], "rows": [[1.0]]})
}
