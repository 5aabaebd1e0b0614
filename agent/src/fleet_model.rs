//! Models the fleet sends: a signed offer comes down the stream, the file follows in chunks
//! the agent asks for, and nothing is used before the signature (fleet key, over the registry
//! number and the manifest) and the file's sha256 (named by the signed manifest) both check.
//!
//! On disk, under `<data_dir>/models/`:
//! - `incoming/<number>.part`: a download in progress; after a reconnect the agent asks for
//!   the rest from its length on, so an interrupted download resumes;
//! - `<number>/manifest.json`, `<number>/<file>`, `<number>/signature`: a verified model;
//! - `current`: the number of the fleet model in force (absent or 0: the agent's own model),
//!   re-verified at start before it is used again.
//!
//! The detector loads a verified model (`detect::LiveDetector::use_fleet_model`), keeps the
//! running one if that fails, and the pipeline reports the outcome as a durable status.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The largest model file the agent takes.
pub const MAX_MODEL_BYTES: u64 = 16 * 1024 * 1024;

/// A signed offer, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub number: u64,
    pub version: String,
    pub manifest: String,
    pub signature: String,
    pub size: u64,
}

/// A piece of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub number: u64,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// What the fleet wants this agent to run, once known and verified.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// Run fleet model `number` from this manifest; 0 and `None`: the agent's own model.
    Use {
        number: u64,
        manifest: Option<PathBuf>,
    },
    /// Offer `number` was refused before loading (signature, hash, size, disk).
    Refused { number: u64, error: String },
}

/// What the uplink does next for an offer or a chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Ask for the file of `number` from `offset` on.
    Request {
        number: u64,
        offset: u64,
    },
    Assign(Assignment),
    /// Nothing to do (a stale or repeated chunk, more chunks to come).
    Wait,
}

/// The fields of a manifest the download needs.
#[derive(serde::Deserialize)]
struct ManifestHead {
    file: String,
    sha256: String,
}

pub struct Downloads {
    dir: PathBuf,
    key: Option<Vec<u8>>,
    /// The offer being downloaded, and how many bytes of it are on disk.
    pending: Option<(Offer, ManifestHead, u64)>,
}

impl Downloads {
    pub fn new(dir: PathBuf, key: Option<Vec<u8>>) -> Self {
        Self {
            dir,
            key,
            pending: None,
        }
    }

    fn refused(number: u64, error: impl Into<String>) -> Next {
        Next::Assign(Assignment::Refused {
            number,
            error: error.into(),
        })
    }

    /// The fleet model to run at start, if one was in force and still verifies.
    pub fn restore(&self) -> Option<Assignment> {
        let text = std::fs::read_to_string(self.dir.join("current")).ok()?;
        let number: u64 = text.trim().parse().ok()?;
        if number == 0 {
            return None;
        }
        let dir = self.dir.join(number.to_string());
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
        let signature = std::fs::read_to_string(dir.join("signature")).ok()?;
        match sco_policy::verify_model_signature(
            self.key.as_deref(),
            number,
            &manifest,
            signature.trim(),
        ) {
            Ok(()) => Some(Assignment::Use {
                number,
                manifest: Some(dir.join("manifest.json")),
            }),
            Err(e) => {
                tracing::error!(number, error = %e, "the stored fleet model no longer verifies; running the agent's own");
                None
            }
        }
    }

    /// Records the fleet model in force (0: the agent's own); see [`record_current`].
    pub fn set_current(&self, number: u64) -> std::io::Result<()> {
        record_current(&self.dir, number)
    }

    /// A new offer: verify it, then either use a model already here or ask for its bytes.
    pub fn offer(&mut self, o: Offer) -> Next {
        self.pending = None;
        let number = o.number;
        if number == 0 {
            return Next::Assign(Assignment::Use {
                number: 0,
                manifest: None,
            });
        }
        if let Err(e) = sco_policy::verify_model_signature(
            self.key.as_deref(),
            number,
            &o.manifest,
            &o.signature,
        ) {
            return Self::refused(number, format!("model {number} ({}): {e}", o.version));
        }
        let head: ManifestHead = match serde_json::from_str(&o.manifest) {
            Ok(h) => h,
            Err(e) => return Self::refused(number, format!("model {number}: manifest: {e}")),
        };
        if !plain_file_name(&head.file) {
            return Self::refused(
                number,
                format!(
                    "model {number}: manifest file {:?} is not a plain file name",
                    head.file
                ),
            );
        }
        if o.size == 0 || o.size > MAX_MODEL_BYTES {
            return Self::refused(
                number,
                format!(
                    "model {number}: {} bytes; at most {MAX_MODEL_BYTES}",
                    o.size
                ),
            );
        }
        let dir = self.dir.join(number.to_string());
        if file_sha256(&dir.join(&head.file)).is_some_and(|h| h.eq_ignore_ascii_case(&head.sha256))
            && std::fs::read_to_string(dir.join("manifest.json")).is_ok_and(|m| m == o.manifest)
        {
            return Next::Assign(Assignment::Use {
                number,
                manifest: Some(dir.join("manifest.json")),
            });
        }
        let part = self.part(number);
        let mut have = std::fs::metadata(&part).map_or(0, |m| m.len());
        if have > o.size {
            let _ = std::fs::remove_file(&part);
            have = 0;
        }
        let size = o.size;
        self.pending = Some((o, head, have));
        if have == size {
            return self.finish();
        }
        Next::Request {
            number,
            offset: have,
        }
    }

    fn part(&self, number: u64) -> PathBuf {
        self.dir.join("incoming").join(format!("{number}.part"))
    }

    /// A piece of the file being downloaded; the last one completes and verifies it.
    pub fn chunk(&mut self, c: Chunk) -> Next {
        let Some((offer, _, have)) = self.pending.as_mut() else {
            return Next::Wait;
        };
        if c.number != offer.number || c.offset != *have {
            return Next::Wait;
        }
        let number = offer.number;
        let room = offer.size - *have;
        if c.data.len() as u64 > room {
            self.pending = None;
            let _ = std::fs::remove_file(self.part(number));
            return Self::refused(number, format!("model {number}: more bytes than offered"));
        }
        let part = self.part(number);
        let written = part
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&part)
            })
            .and_then(|mut f| f.write_all(&c.data).and_then(|()| f.sync_data()));
        if let Err(e) = written {
            self.pending = None;
            return Self::refused(number, format!("model {number}: cannot store it: {e}"));
        }
        if let Some((_, _, have)) = self.pending.as_mut() {
            *have += c.data.len() as u64;
        }
        if self.pending.as_ref().is_some_and(|(o, _, h)| *h == o.size) {
            return self.finish();
        }
        Next::Wait
    }

    /// The whole file is here: check its sha256 and move it beside its manifest.
    fn finish(&mut self) -> Next {
        let Some((offer, head, _)) = self.pending.take() else {
            return Next::Wait;
        };
        let number = offer.number;
        let part = self.part(number);
        let actual = file_sha256(&part).unwrap_or_default();
        if !actual.eq_ignore_ascii_case(&head.sha256) {
            let _ = std::fs::remove_file(&part);
            return Self::refused(
                number,
                format!(
                    "model {number}: sha256 mismatch: the signed manifest says {}, the file is {actual}",
                    head.sha256
                ),
            );
        }
        let dir = self.dir.join(number.to_string());
        let stored = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("manifest.json"), &offer.manifest))
            .and_then(|()| std::fs::write(dir.join("signature"), &offer.signature))
            .and_then(|()| std::fs::rename(&part, dir.join(&head.file)));
        match stored {
            Ok(()) => Next::Assign(Assignment::Use {
                number,
                manifest: Some(dir.join("manifest.json")),
            }),
            Err(e) => Self::refused(number, format!("model {number}: cannot store it: {e}")),
        }
    }
}

/// Records in `dir` (`<data_dir>/models`) the fleet model in force (0: the agent's own) and
/// removes the files of every other verified model.
pub fn record_current(dir: &Path, number: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("current.tmp");
    std::fs::write(&tmp, format!("{number}\n"))?;
    std::fs::rename(&tmp, dir.join("current"))?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let other = name
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n != number);
            if other {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name != "manifest.json"
        && name != "signature"
}

fn file_sha256(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
    }

    fn offer(k: &Ed25519KeyPair, number: u64, bytes: &[u8]) -> Offer {
        let manifest = serde_json::json!({
            "file": "m.onnx",
            "sha256": hex::encode(Sha256::digest(bytes)),
            "version": "9.9",
        })
        .to_string();
        Offer {
            number,
            version: "9.9".into(),
            signature: hex::encode(k.sign(&sco_policy::signed_model_message(number, &manifest))),
            manifest,
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn a_download_resumes_where_it_stopped_and_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        let k = key();
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut d = Downloads::new(dir.path().into(), Some(k.public_key().as_ref().to_vec()));
        assert_eq!(
            d.offer(offer(&k, 3, &bytes)),
            Next::Request {
                number: 3,
                offset: 0
            }
        );
        let first = Chunk {
            number: 3,
            offset: 0,
            data: bytes[..40].to_vec(),
        };
        assert_eq!(d.chunk(first.clone()), Next::Wait);
        // the stream drops; a new one offers again: only the rest is asked for
        let mut d = Downloads::new(dir.path().into(), Some(k.public_key().as_ref().to_vec()));
        assert_eq!(
            d.offer(offer(&k, 3, &bytes)),
            Next::Request {
                number: 3,
                offset: 40
            }
        );
        // a repeated chunk is ignored
        assert_eq!(d.chunk(first), Next::Wait);
        let manifest = dir.path().join("3").join("manifest.json");
        assert_eq!(
            d.chunk(Chunk {
                number: 3,
                offset: 40,
                data: bytes[40..].to_vec()
            }),
            Next::Assign(Assignment::Use {
                number: 3,
                manifest: Some(manifest.clone())
            })
        );
        assert_eq!(
            std::fs::read(dir.path().join("3").join("m.onnx")).expect("file"),
            bytes
        );
        // offered again later: nothing to download
        assert_eq!(
            d.offer(offer(&k, 3, &bytes)),
            Next::Assign(Assignment::Use {
                number: 3,
                manifest: Some(manifest.clone())
            })
        );
        d.set_current(3).expect("current");
        assert_eq!(
            d.restore(),
            Some(Assignment::Use {
                number: 3,
                manifest: Some(manifest)
            })
        );
    }

    #[test]
    fn a_bad_signature_or_hash_is_refused_and_nothing_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let k = key();
        let other = key();
        let bytes = vec![7u8; 10];
        let mut d = Downloads::new(dir.path().into(), Some(k.public_key().as_ref().to_vec()));
        let Next::Assign(Assignment::Refused { number: 1, error }) =
            d.offer(offer(&other, 1, &bytes))
        else {
            panic!("a model signed by another key must be refused");
        };
        assert!(error.contains("signature does not verify"), "{error}");
        // signed for number 1, offered as number 2
        let mut moved = offer(&k, 1, &bytes);
        moved.number = 2;
        assert!(matches!(
            d.offer(moved),
            Next::Assign(Assignment::Refused { number: 2, .. })
        ));
        // the bytes that come are not the ones the manifest names
        assert!(matches!(
            d.offer(offer(&k, 4, &bytes)),
            Next::Request { .. }
        ));
        let Next::Assign(Assignment::Refused { error, .. }) = d.chunk(Chunk {
            number: 4,
            offset: 0,
            data: vec![8u8; 10],
        }) else {
            panic!("a file with another hash must be refused");
        };
        assert!(error.contains("sha256 mismatch"), "{error}");
        assert!(!dir.path().join("4").exists());
        assert!(!dir.path().join("incoming").join("4.part").exists());
        // no key: refused
        let mut d = Downloads::new(dir.path().into(), None);
        assert!(matches!(
            d.offer(offer(&k, 5, &bytes)),
            Next::Assign(Assignment::Refused { number: 5, .. })
        ));
    }

    #[test]
    fn number_zero_is_the_agents_own_model() {
        let dir = tempfile::tempdir().expect("dir");
        let mut d = Downloads::new(dir.path().into(), None);
        let own = Offer {
            number: 0,
            version: String::new(),
            manifest: String::new(),
            signature: String::new(),
            size: 0,
        };
        assert_eq!(
            d.offer(own),
            Next::Assign(Assignment::Use {
                number: 0,
                manifest: None
            })
        );
        d.set_current(0).expect("current");
        assert_eq!(d.restore(), None);
    }
}
