//! Content digests: how every blob in an OCI image is named and checked.
//!
//! An image is a tree of blobs that point at each other by `sha256:<hex>`. Reading
//! an image means re-hashing every blob and refusing it when the name lies;
//! writing one means hashing while writing. Both directions go through here.

use std::io::{self, Write};

use oci_spec::image::{Digest, Sha256Digest};
use sha2::{Digest as _, Sha256};

/// The `sha256:` digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    from_hasher(Sha256::new_with_prefix(bytes))
}

fn from_hasher(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // A freshly computed sha256 is always 64 lowercase hex digits, which is
    // exactly what `Sha256Digest` accepts.
    let sha: Sha256Digest = hex.parse().expect("sha256 hex is a valid digest");
    sha.into()
}

/// A writer that hashes and counts everything passing through it, so a blob's
/// digest and size are known the moment it has been written (no second read).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Gives back the inner writer with the digest and size of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, from_hasher(self.hasher), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it; used to verify a
/// blob while it is being consumed (decompressed, unpacked) rather than before.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The digest and size of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (from_hasher(self.hasher), self.size)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn writer_and_reader_agree_with_one_shot_hash() {
        let data = b"berth layers are content addressed";
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(data).unwrap();
        let (out, digest, size) = w.finish();
        assert_eq!(out, data);
        assert_eq!(size, data.len() as u64);
        assert_eq!(digest, sha256(data));

        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r.by_ref(), &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (sha256(data), data.len() as u64));
    }
}
