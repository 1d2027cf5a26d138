//! ADD of a local archive: detecting a tar (plain or compressed, by content, as Docker does),
//! unpacking it into the destination through the confined `layer::apply`, and `--chown` on what
//! it unpacked.

use super::*;

/// Whether a selected file is a tar archive, plain or compressed (Docker: it decompresses and
/// a tar header parses). A compressed file that is not a tar inside is copied as it is.
pub(super) fn is_archive(root: BorrowedFd<'_>, path: &[u8]) -> Result<bool, ContextError> {
    let Some(file) = open_source(root, path)? else {
        return Ok(false);
    };
    let Ok(mut plain) = decompress(file) else {
        return Ok(false);
    };
    let mut header = [0u8; 512];
    let mut got = 0;
    while got < header.len() {
        match plain.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Not decompressible after all (a file that only starts like gzip): not an archive.
            Err(_) => return Ok(false),
        }
    }
    Ok(got == header.len() && tar_header_valid(&header))
}

/// A tar header: its checksum field matches (ustar and old v7 headers alike) and it is not all zeros.
fn tar_header_valid(h: &[u8; 512]) -> bool {
    if h.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &h[148..156];
    let text: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
    let text = text.trim_start_matches(' ');
    let Ok(want) = u32::from_str_radix(text, 8) else {
        return false;
    };
    let sum: u32 =
        h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) }).sum();
    sum == want
}

/// Unpacks an archive into the destination directory through the confined `layer::apply`.
pub(super) fn unpack(
    root: BorrowedFd<'_>,
    path: &str,
    dest: &Dest,
    comps: &[Vec<u8>],
    chown: Option<(u32, u32)>,
    report: &mut CopyReport,
) -> Result<(), ContextError> {
    let unpack_err = |source| ContextError::Unpack { path: path.to_owned(), source };
    let file = open_source(root, path.as_bytes())?.ok_or_else(|| ContextError::NotAFile { path: path.to_owned() })?;
    let plain = decompress(file).map_err(unpack_err)?;
    let (dir, _) = dest.open_or_create_dir(comps)?;
    // The kernel resolves `/proc/self/fd/N` to exactly the directory we opened inside the rootfs;
    // `apply` confines every entry below it.
    let applied =
        crate::layer::apply(plain, &dirfd::proc_fd(dir.as_fd()), &ApplyOptions::default()).map_err(unpack_err)?;
    report.archives += 1;
    report.files += applied.entries;
    report.bytes += applied.bytes;
    if let Some(ids) = chown {
        let file =
            open_source(root, path.as_bytes())?.ok_or_else(|| ContextError::NotAFile { path: path.to_owned() })?;
        let entries = crate::layer::list(decompress(file).map_err(unpack_err)?).map_err(unpack_err)?;
        chown_entries(dir.as_fd(), &entries, ids)?;
    }
    Ok(())
}

/// `ADD --chown` on an unpacked archive: every entry the archive holds (resolved inside the
/// destination directory as `apply` resolved it) gets the ids; then regular files and
/// directories get their mode back (a chown clears setuid/setgid bits).
fn chown_entries(
    dir: BorrowedFd<'_>,
    entries: &[crate::layer::EntryInfo],
    (uid, gid): (u32, u32),
) -> Result<(), ContextError> {
    use crate::layer::EntryKind;
    let mut restore = Vec::new();
    for entry in entries {
        let mut comps: Vec<&[u8]> = Vec::new();
        for c in entry.path.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    comps.pop();
                }
                c => comps.push(c),
            }
        }
        let Some((name, parent)) = comps.split_last() else {
            continue;
        };
        if name.starts_with(b".wh.") {
            continue; // whiteouts create nothing
        }
        let shown = entry.path.as_slice();
        let parent = match dirfd::open_in_root(dir, &parent.join(&b'/'), dirfd::DIR_FLAGS) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue, // removed by a later whiteout
            Err(e) => return Err(werr(shown, "open directory")(e)),
        };
        match dirfd::lstat_at(parent.as_fd(), name).map_err(werr(shown, "inspect"))? {
            Some(_) => lchown_at(parent.as_fd(), name, uid, gid).map_err(werr(shown, "chown"))?,
            None => continue,
        }
        if matches!(entry.kind, EntryKind::Regular | EntryKind::Directory) && entry.mode & 0o6000 != 0 {
            restore.push((parent, name.to_vec(), entry.mode));
        }
    }
    for (parent, name, mode) in restore {
        let st = dirfd::lstat_at(parent.as_fd(), &name).map_err(werr(&name, "inspect"))?;
        if st.is_some_and(|st| dirfd::file_type(&st) != FileType::Symlink) {
            rustix::fs::chmodat(&parent, dirfd::os(&name), Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(werr(&name, "chmod"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_detection() {
        let mut h = [0u8; 512];
        assert!(!tar_header_valid(&h), "zeros are the end marker, not an archive");
        h[..5].copy_from_slice(b"hello");
        h[148..156].copy_from_slice(b"0000000\0");
        assert!(!tar_header_valid(&h), "a wrong checksum");
        let sum: u32 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(tar_header_valid(&h));
    }
}
