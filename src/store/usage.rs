//! What each GC root keeps: the closure of every tag, GC root and live lease, one by one, for
//! disk accounting (`disk`: which blobs an image shares with others, which only the build cache
//! holds, what a root frees when it goes). The same walk as [`Store::prune`]'s mark, so what
//! this says a root keeps is exactly what prune keeps for it.

use std::collections::{BTreeMap, BTreeSet};

use super::gc::{Requirement, variants, walk_with};
use super::lock::StoreLock;
use super::{Store, StoreError, unix_now};
use crate::oci::{Digest, MediaType};

/// What holds a [`RootClosure`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootHolder {
    /// The tags naming one manifest or index (their references, sorted).
    Tags(Vec<String>),
    /// A GC root registered by another module, by owner (`cache:<key>`, `untagged:<hex>`).
    Root(String),
    /// A live lease (a running operation) pins the digest.
    Lease,
}

/// One root and every digest it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootClosure {
    pub holder: RootHolder,
    /// The digest the root names.
    pub digest: Digest,
    /// Every digest reached from it, itself included: children of manifests and indexes and
    /// layer variants (present or not: a missing one is fsck's business).
    pub reachable: BTreeSet<Digest>,
}

impl Store {
    /// The closure of each root prune keeps (tags grouped by what they name, GC roots, leased
    /// digests), read under the shared store lock. An unreadable manifest ends its branch (its
    /// children are not reached): prune refuses to sweep such a store, so callers that act on
    /// this prune first.
    pub fn root_closures(&self) -> Result<Vec<RootClosure>, StoreError> {
        let _lock = StoreLock::shared(&self.inner.paths.lock)?;
        let mut tagged: BTreeMap<Digest, (Vec<String>, MediaType)> = BTreeMap::new();
        for tag in self.tags()? {
            let entry = tagged.entry(tag.descriptor.digest).or_insert_with(|| (Vec::new(), tag.descriptor.media_type));
            entry.0.push(tag.reference.to_string());
        }
        let mut roots: Vec<(RootHolder, Digest, Option<MediaType>)> = Vec::new();
        for (digest, (mut names, media_type)) in tagged {
            names.sort();
            roots.push((RootHolder::Tags(names), digest, Some(media_type)));
        }
        for (owner, digest) in self.roots("")? {
            roots.push((RootHolder::Root(owner), digest, None));
        }
        for digest in self.leased_digests(unix_now())? {
            roots.push((RootHolder::Lease, digest, None));
        }
        let variants = variants(self)?;
        let mut out = Vec::with_capacity(roots.len());
        for (holder, digest, media_type) in roots {
            let visit = (digest, media_type, String::new(), Requirement::Optional);
            let closure = walk_with(self, vec![visit], &variants)?;
            out.push(RootClosure { holder, digest, reachable: closure.reachable });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Reference;
    use crate::store::tags::tests::image;
    use crate::store::testutil::store;

    #[test]
    fn each_root_keeps_its_closure() {
        let (_dir, s) = store();
        let shared = image(&s, b"layer");
        s.set_tag(&Reference::parse("a").unwrap(), shared.clone()).unwrap();
        s.set_tag(&Reference::parse("b").unwrap(), shared.clone()).unwrap();
        let cached = s.write_blob(b"cached layer", None).unwrap();
        s.add_root("cache:k", &cached).unwrap();
        let lease = s.lease("build").unwrap();
        let leased = s.write_blob(b"leased", Some(&lease)).unwrap();
        let closures = s.root_closures().unwrap();
        assert_eq!(closures.len(), 3, "{closures:?}");
        let tags = &closures[0];
        assert_eq!(
            tags.holder,
            RootHolder::Tags(vec!["docker.io/library/a:latest".into(), "docker.io/library/b:latest".into()])
        );
        assert!(tags.reachable.contains(&shared.digest));
        assert!(tags.reachable.contains(&Digest::of(b"layer")));
        assert_eq!(tags.reachable.len(), 3, "manifest, config, layer");
        assert_eq!(closures[1].holder, RootHolder::Root("cache:k".into()));
        assert_eq!(closures[1].reachable, BTreeSet::from([cached]));
        assert_eq!(closures[2].holder, RootHolder::Lease);
        assert_eq!(closures[2].reachable, BTreeSet::from([leased]));
    }
}
