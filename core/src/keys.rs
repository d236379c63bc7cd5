//! The host's own keys: 32 random bytes in a file of the state directory,
//! made on first use. The artifact cache's MAC key and the key tenants'
//! secrets are sealed with are such files.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The 32-byte key in `path`, made (random, mode 0600) when the file
/// does not exist: the artifact cache's MAC key, the secrets' key.
///
/// # Errors
/// The file cannot be read or written, or does not hold 32 bytes.
pub fn key_file(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            let key: [u8; 32] = rand::random();
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path)?;
            bytes
                .try_into()
                .map_err(|_| std::io::Error::other(format!("{} is not a 32-byte key", path.display())))
        }
        Err(error) => Err(error),
    }
}
