//! Snapshots of a directory tree for equality asserts: path → type, mode, owner, size, content
//! hash, link target, xattrs, rdev, mtime and hardlink group. Never follows symlinks.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use slipway::oci::Hasher;

/// One object of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// sha256 of the content (regular files only), hashed while streaming.
    pub content: Option<String>,
    pub link: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub rdev: u64,
    pub mtime: i64,
    /// For multiply-linked files: the smallest path sharing the inode.
    pub link_group: Option<Vec<u8>>,
}

/// Path (relative, raw bytes) → node, for everything under `root` (not `root` itself).
pub type Tree = BTreeMap<Vec<u8>, Node>;

pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(std::ffi::OsStr::from_bytes(&rel)) };
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.file_name().as_bytes());
            let abs = entry.path();
            let md = fs::symlink_metadata(&abs).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else {
                "socket"
            };
            let content = ft.is_file().then(|| hash_file(&abs));
            let link = ft.is_symlink().then(|| fs::read_link(&abs).unwrap().as_os_str().as_bytes().to_vec());
            if ft.is_dir() {
                stack.push(path.clone());
            } else if md.nlink() > 1 {
                let first = inodes.entry((md.dev(), md.ino())).or_insert_with(|| path.clone());
                if path < *first {
                    *first = path.clone();
                }
            }
            tree.insert(
                path,
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if ft.is_dir() { 0 } else { md.size() },
                    content,
                    link,
                    xattrs: xattrs(&abs),
                    rdev: md.rdev(),
                    mtime: md.mtime(),
                    link_group: None,
                },
            );
        }
    }
    // Second pass: name each hardlink group by its smallest member.
    for (path, node) in tree.iter_mut() {
        if node.kind == "dir" {
            continue;
        }
        let md = fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(path))).unwrap();
        if md.nlink() > 1 {
            node.link_group = inodes.get(&(md.dev(), md.ino())).cloned();
        }
    }
    tree
}

/// Streaming sha256 of a file (never reads it whole).
pub fn hash_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap();
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish().to_string()
}

fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 << 10];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 << 10];
        if let Ok(len) = rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut value[..]) {
            value.truncate(len);
            out.insert(name.to_vec(), value);
        }
    }
    out
}

/// Asserts two trees are equal, printing the first differing path.
#[track_caller]
pub fn assert_same(left: &Tree, right: &Tree) {
    let lk: Vec<_> = left.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    let rk: Vec<_> = right.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(lk, rk, "trees have different paths");
    for (path, l) in left {
        let r = &right[path];
        assert_eq!(l, r, "trees differ at {}", String::from_utf8_lossy(path));
    }
}
