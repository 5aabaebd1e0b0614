//! Generates the Rust code for `sco.v1` with a vendored `protoc`, so building
//! needs no system tools.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/sco/v1/agent.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The RPC is named `Connect`, which would clash with the generated
        // `AgentServiceClient::connect` constructor; clients build a `Channel`.
        .build_transport(false)
        // prost's codec with small buffers (`src/codec.rs`): one stream per agent adds up
        .codec_path("crate::codec::LeanCodec")
        .compile_protos(&["proto/sco/v1/agent.proto"], &["proto"])?;
    Ok(())
}
