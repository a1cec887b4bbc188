//! Opening files for reading without ever blocking (issue 11): every path the helper reads
//! (`file` SecretRefs, import and validation sources) is opened `O_NONBLOCK`, checked
//! through the open descriptor (`fstat`) to be a regular file, and read up to a cap. A FIFO
//! or a device (`/dev/zero`, a named pipe nobody writes) is refused at once instead of
//! hanging the process or filling its memory.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why [`open_regular`] or [`read_capped`] refused.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The path could not be opened or examined.
    Io(io::Error),
    /// The path is not a regular file (a FIFO, a device, a socket, a directory).
    NotRegular(&'static str),
    /// The file holds more than the cap (bytes).
    TooLarge(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot be opened: {e}"),
            ReadError::NotRegular(what) => write!(f, "is a {what}, not a regular file"),
            ReadError::TooLarge(cap) => write!(f, "is larger than {cap} bytes"),
        }
    }
}

/// What kind of non-regular file `meta` describes.
pub(crate) fn file_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Opens `path` read-only with `O_NONBLOCK` (a FIFO without a writer does not block the
/// open) and returns it with its `fstat` metadata when it is a regular file.
///
/// Errors: [`ReadError::Io`], [`ReadError::NotRegular`].
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), ReadError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_kind(&meta)));
    }
    Ok((f, meta))
}

/// Reads all of `f` when it holds at most `cap` bytes (checked on the size first, then
/// on what is actually read, so a file that grows meanwhile is still refused).
///
/// Errors: [`ReadError::TooLarge`], [`ReadError::Io`].
pub(crate) fn read_capped(f: File, meta: &Metadata, cap: u64) -> Result<Vec<u8>, ReadError> {
    if meta.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(buf)
}

#[cfg(test)]
/// [`open_regular`] then [`read_capped`].
///
/// Errors: as those two.
pub(crate) fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let (f, meta) = open_regular(path)?;
    read_capped(f, &meta, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_and_a_device_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            open_regular(&fifo),
            Err(ReadError::NotRegular("FIFO"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("character device"))
        ));
        assert!(matches!(
            open_regular(dir.path()),
            Err(ReadError::NotRegular("directory"))
        ));
    }

    #[test]
    fn the_cap_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        assert!(matches!(read_regular(&p, 4), Err(ReadError::TooLarge(4))));
    }
}
