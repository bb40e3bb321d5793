//! The cache folder as lodcache touches it: opened once, then every read, write and removal
//! happens relative to that handle and never follows a symbolic link, so nothing outside the
//! folder is ever read, written or deleted, whatever has been put inside it.
//!
//! - Files are opened with `O_NOFOLLOW | O_NONBLOCK`, and the opened handle's type is checked
//!   before a byte is read: a symlink, FIFO, socket, device or folder where a file belongs is a
//!   [`Entry::NotRegular`] (a FIFO cannot hang the reader, `/dev/zero` cannot fill memory).
//!   At most the caller's maximum length is read.
//! - Level folders are opened with `O_NOFOLLOW | O_DIRECTORY`: a symlink there (to a folder
//!   outside the cache, say) is never entered; when the caller wants to write, the link itself
//!   (not its target) is removed and a real folder made in its place.
//! - Writes go to a temporary file created with `O_EXCL | O_NOFOLLOW` in the same folder, then
//!   renamed into place (`renameat`), so readers see the old file or the whole new one.
//! - Removal (`unlinkat`) removes the entry itself, never a link's target.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[cfg(unix)]
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
#[cfg(unix)]
use std::os::fd::OwnedFd;

use crate::fsutil;

/// What a file in the cache folder turned out to be.
#[derive(Debug)]
pub(crate) enum Entry {
    /// Nothing there.
    Missing,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A regular file longer than the caller's maximum (not read).
    TooLong(u64),
    /// Something that is not a regular file (its kind, for the warning).
    NotRegular(&'static str),
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) name: String,
    pub(crate) is_file: bool,
    pub(crate) is_dir: bool,
    pub(crate) len: u64,
    pub(crate) modified: SystemTime,
}

/// A cache folder, opened once (see the module docs).
#[derive(Debug)]
pub(crate) struct CacheFolder {
    path: PathBuf,
    #[cfg(unix)]
    root: OwnedFd,
}

#[cfg(unix)]
fn kind(ty: FileType) -> &'static str {
    match ty {
        FileType::Directory => "a folder",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::RegularFile => "a file",
        _ => "not a regular file",
    }
}

#[cfg(unix)]
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

#[cfg(unix)]
impl CacheFolder {
    /// Opens (creating it and its parents when `create`) the folder at `path`. `path` itself
    /// may be a link the user made (it is resolved once, here); nothing inside it is followed.
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<CacheFolder> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(CacheFolder {
            path: path.to_path_buf(),
            root,
        })
    }

    /// The folder's path (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The folder `sub` of the root (`None`: the root itself), opened without following a
    /// link. A link or file there is removed (the entry itself) and replaced by a folder when
    /// `create`; otherwise it reads as missing.
    fn dir(&self, sub: Option<&str>, create: bool) -> io::Result<Option<OwnedFd>> {
        let Some(sub) = sub else {
            return Ok(Some(rustix::fs::openat(
                &self.root,
                ".",
                DIR_FLAGS,
                Mode::empty(),
            )?));
        };
        match rustix::fs::openat(&self.root, sub, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => return Ok(Some(fd)),
            Err(e) if e == rustix::io::Errno::NOENT => {}
            Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
                if !create {
                    return Ok(None);
                }
                log::warn!(
                    "lodcache: {:?} in the cache folder is not a folder; replacing the entry",
                    self.path.join(sub)
                );
                rustix::fs::unlinkat(&self.root, sub, AtFlags::empty())?;
            }
            Err(e) => return Err(e.into()),
        }
        if !create {
            return Ok(None);
        }
        match rustix::fs::mkdirat(&self.root, sub, Mode::from_raw_mode(0o777)) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::EXIST => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::openat(&self.root, sub, DIR_FLAGS, Mode::empty())
            .map(Some)
            .map_err(Into::into)
    }

    /// Reads the file `name` in `sub`, at most `max` bytes (see [`Entry`]).
    pub(crate) fn read(&self, sub: Option<&str>, name: &str, max: u64) -> io::Result<Entry> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(Entry::Missing);
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOENT => return Ok(Entry::Missing),
            Err(e) if e == rustix::io::Errno::LOOP => {
                return Ok(Entry::NotRegular("a symbolic link"));
            }
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        let ty = FileType::from_raw_mode(stat.st_mode);
        if ty != FileType::RegularFile {
            return Ok(Entry::NotRegular(kind(ty)));
        }
        let len = u64::try_from(stat.st_size).unwrap_or(0);
        read_capped(std::fs::File::from(fd), len, max)
    }

    /// Writes `bytes` as the file `name` in `sub` (made if missing), atomically: a temporary
    /// file created exclusively, renamed into place.
    pub(crate) fn write_atomic(
        &self,
        sub: Option<&str>,
        name: &str,
        bytes: &[u8],
    ) -> io::Result<()> {
        let dir = self
            .dir(sub, true)?
            .ok_or_else(|| io::Error::other("the folder could not be made"))?;
        let tmp = format!("{name}{}{}", fsutil::TEMP_MARKER, fsutil::unique_suffix());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o666))?;
        let written = std::fs::File::from(fd).write_all(bytes);
        let result = written.and_then(|()| {
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(io::Error::from)
        });
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Removes the entry `name` in `sub` (a file, link, FIFO, ...: the entry itself; an empty
    /// folder too). `Ok(false)` when there was none.
    pub(crate) fn remove(&self, sub: Option<&str>, name: &str) -> io::Result<bool> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(false),
            Err(e) if e == rustix::io::Errno::ISDIR || e == rustix::io::Errno::PERM => {
                match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
                    Ok(()) => Ok(true),
                    Err(e) if e == rustix::io::Errno::NOENT => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The entries of `sub` (`None`: the root), without following links (a link is neither a
    /// file nor a folder here).
    pub(crate) fn list(&self, sub: Option<&str>) -> io::Result<Vec<Listed>> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let ty = FileType::from_raw_mode(stat.st_mode);
            let modified = SystemTime::UNIX_EPOCH
                + std::time::Duration::new(
                    u64::try_from(stat.st_mtime).unwrap_or(0),
                    u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
                );
            out.push(Listed {
                name: name.to_string(),
                is_file: ty == FileType::RegularFile,
                is_dir: ty == FileType::Directory,
                len: u64::try_from(stat.st_size).unwrap_or(0),
                modified,
            });
        }
        Ok(out)
    }

    /// Opens (creating) the file `name` at the root for locking, without following a link.
    pub(crate) fn lock_file(&self, name: &str) -> io::Result<std::fs::File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.root, name, flags, Mode::from_raw_mode(0o666))?;
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(std::fs::File::from(fd))
    }
}

/// Elsewhere: the same operations by path, refusing links by their metadata (best effort: the
/// check and the use are two steps).
#[cfg(not(unix))]
impl CacheFolder {
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<CacheFolder> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        if !path.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a folder"));
        }
        Ok(CacheFolder {
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self, sub: Option<&str>, create: bool) -> io::Result<Option<PathBuf>> {
        let Some(sub) = sub else {
            return Ok(Some(self.path.clone()));
        };
        let p = self.path.join(sub);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => return Ok(Some(p)),
            Ok(_) if create => std::fs::remove_file(&p)?,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !create {
            return Ok(None);
        }
        std::fs::create_dir_all(&p)?;
        Ok(Some(p))
    }

    pub(crate) fn read(&self, sub: Option<&str>, name: &str, max: u64) -> io::Result<Entry> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(Entry::Missing);
        };
        let p = dir.join(name);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Missing),
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            return Ok(Entry::NotRegular("not a regular file"));
        }
        read_capped(std::fs::File::open(&p)?, meta.len(), max)
    }

    pub(crate) fn write_atomic(
        &self,
        sub: Option<&str>,
        name: &str,
        bytes: &[u8],
    ) -> io::Result<()> {
        let dir = self
            .dir(sub, true)?
            .ok_or_else(|| io::Error::other("the folder could not be made"))?;
        fsutil::write_atomic(&dir.join(name), bytes).map_err(io::Error::other)
    }

    pub(crate) fn remove(&self, sub: Option<&str>, name: &str) -> io::Result<bool> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(false);
        };
        let p = dir.join(name);
        let result = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn list(&self, sub: Option<&str>) -> io::Result<Vec<Listed>> {
        let Some(dir) = self.dir(sub, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            out.push(Listed {
                name,
                is_file: meta.is_file(),
                is_dir: meta.is_dir(),
                len: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    pub(crate) fn lock_file(&self, name: &str) -> io::Result<std::fs::File> {
        let p = self.path.join(name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_file()) {
            return Err(io::Error::other("not a regular file"));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
    }
}

/// Reads an opened regular file of `len` bytes, at most `max` (a file that grew past `max`
/// since it was measured is [`Entry::TooLong`] too).
fn read_capped(file: std::fs::File, len: u64, max: u64) -> io::Result<Entry> {
    if len > max {
        return Ok(Entry::TooLong(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(Entry::TooLong(bytes.len() as u64));
    }
    Ok(Entry::File(bytes))
}

/// Whether `name` is a temporary file lodcache made for the final name `target` (see
/// [`fsutil::temp_path`]): `<target>.tmp-<pid>-<n>-<hex>`.
pub(crate) fn is_temp_of(name: &str, target: impl Fn(&str) -> bool) -> bool {
    let Some(at) = name.find(fsutil::TEMP_MARKER) else {
        return false;
    };
    let rest = &name[at + fsutil::TEMP_MARKER.len()..];
    let mut parts = rest.split('-');
    let shaped = parts.next().is_some_and(all_digits)
        && parts.next().is_some_and(all_digits)
        && parts
            .next()
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts.next().is_none();
    shaped && target(&name[..at])
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a temporary file whose writer is gone (see [`fsutil::is_stale_temp`]).
pub(crate) fn is_stale(name: &str, modified: SystemTime, max_age: std::time::Duration) -> bool {
    let Some(at) = name.find(fsutil::TEMP_MARKER) else {
        return false;
    };
    let pid = name[at + fsutil::TEMP_MARKER.len()..]
        .split('-')
        .next()
        .unwrap_or_default();
    let proc_dir = Path::new("/proc");
    if all_digits(pid) && proc_dir.join("self").exists() && !proc_dir.join(pid).exists() {
        return true;
    }
    modified.elapsed().is_ok_and(|age| age > max_age)
}
