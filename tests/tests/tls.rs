//! The agent port accepts only client certificates signed by the fleet CA
//! and still valid; the identity is the certificate's, never the hello's.

use std::time::Duration;

use sco_control_plane::pki::Ca;
use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{agent_message, AgentMessage, Hello};
use sco_tests::{Db, Sandbox};
use time::OffsetDateTime;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Opens a stream with the given client identity and waits for the control
/// plane's first message. `Ok` only if the stream really works.
async fn try_stream(sb: &Sandbox, identity: Option<(String, String)>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&sb.ca.cert_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{}", sb.grpc_addr))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = AgentServiceClient::new(channel);
    let hello = AgentMessage {
        seq: 0,
        produced_at_ms: 0,
        body: Some(agent_message::Body::Hello(Hello {
            hostname: "claims-to-be-someone-else".into(),
            ..Default::default()
        })),
    };
    let attempt = async {
        let mut stream = client
            .connect(tokio_stream::iter(vec![hello]).chain(tokio_stream::pending()))
            .await
            .map_err(|s| format!("rpc: {s}"))?
            .into_inner();
        match stream.message().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("stream closed".to_string()),
            Err(s) => Err(format!("stream: {s}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

use tokio_stream::StreamExt as _;

fn self_signed(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_valid_fleet_certificates_are_accepted() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let now = OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);

    let good = sb
        .ca
        .issue_agent("good-agent", now - hour, now + hour)
        .expect("issue");
    try_stream(&sb, Some(good))
        .await
        .expect("a valid fleet certificate is accepted");

    let refused = [
        ("no certificate", None),
        (
            "another CA",
            Some(
                Ca::generate()
                    .expect("ca")
                    .issue_agent("rogue", now - hour, now + hour)
                    .expect("issue"),
            ),
        ),
        ("self-signed", Some(self_signed("selfie"))),
        (
            "expired",
            Some(
                sb.ca
                    .issue_agent("expired", now - hour * 48, now - hour * 24)
                    .expect("issue"),
            ),
        ),
        (
            "not yet valid",
            Some(
                sb.ca
                    .issue_agent("future", now + hour * 24, now + hour * 48)
                    .expect("issue"),
            ),
        ),
    ];
    for (case, identity) in refused {
        let result = try_stream(&sb, identity).await;
        assert!(result.is_err(), "{case}: must be refused, got {result:?}");
    }

    let token = sb.admin_token().await;
    let (_, body) = sb.get(&token, "/hosts").await;
    let ids: Vec<&str> = body["hosts"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        vec!["good-agent"],
        "only the valid agent exists, under its certificate's name"
    );
    assert_eq!(body["hosts"][0]["hostname"], "claims-to-be-someone-else");
}
