//! The gRPC codec of `sco.v1`: prost's, with buffers that start small. tonic's default gives
//! every stream an 8 KiB encode buffer and an 8 KiB decode buffer that grows past the first
//! message; a control plane holds one stream per agent, and most of what a stream carries
//! (acks, heartbeats) is a few dozen bytes. A buffer still grows to the largest message it
//! has held (a rollup, a policy, a model chunk).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes an encode or decode buffer starts with (tonic's default: 8 KiB).
pub const BUFFER_BYTES: usize = 1024;
/// Encoded bytes after which a response stream hands what it has to HTTP/2 (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// [`tonic_prost::ProstCodec`] with [`BUFFER_BYTES`] buffers; the generated client and server
/// use it (`proto/build.rs`).
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
