//! Hand-made tar bytes for adversarial tests: any name, any type flag, any size field, PAX and
//! GNU long-name headers in any order, broken checksums — everything the `tar` crate refuses.

/// One ustar header, fields as raw as the test wants them.
#[derive(Clone)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub link: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
}

impl Hdr {
    pub fn new(name: &[u8], typeflag: u8) -> Hdr {
        Hdr {
            name: name.to_vec(),
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_600_000_000,
            typeflag,
            link: Vec::new(),
            devmajor: 0,
            devminor: 0,
        }
    }

    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b[0..100], &self.name);
        octal(&mut b[100..108], u64::from(self.mode));
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        if self.size > 0o77777777777 {
            // GNU base-256.
            b[124] = 0x80;
            b[128..136].copy_from_slice(&self.size.to_be_bytes());
        } else {
            octal(&mut b[124..136], self.size);
        }
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        put(&mut b[157..257], &self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], u64::from(self.devmajor));
        octal(&mut b[337..345], u64::from(self.devminor));
        fix_checksum(&mut b);
        b
    }
}

fn put(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
}

fn octal(dst: &mut [u8], v: u64) {
    let w = dst.len() - 1;
    let s = format!("{v:0w$o}");
    dst[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
}

pub fn fix_checksum(b: &mut [u8; 512]) {
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// A tar stream under construction.
#[derive(Default, Clone)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// A header followed by `data`, padded (the header's size field is left as given).
    pub fn raw(&mut self, h: &Hdr, data: &[u8]) -> &mut RawTar {
        self.bytes.extend_from_slice(&h.encode());
        self.data(data)
    }

    /// Raw data + padding to the next block.
    pub fn data(&mut self, data: &[u8]) -> &mut RawTar {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut RawTar {
        self.raw(&Hdr::new(name.as_bytes(), b'5'), &[])
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut RawTar {
        let mut h = Hdr::new(name.as_bytes(), b'0');
        h.size = data.len() as u64;
        self.raw(&h, data)
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut RawTar {
        let mut h = Hdr::new(name.as_bytes(), b'0');
        h.size = data.len() as u64;
        h.mode = mode;
        self.raw(&h, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        let mut h = Hdr::new(name.as_bytes(), b'2');
        h.link = target.as_bytes().to_vec();
        h.mode = 0o777;
        self.raw(&h, &[])
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        let mut h = Hdr::new(name.as_bytes(), b'1');
        h.link = target.as_bytes().to_vec();
        self.raw(&h, &[])
    }

    /// A PAX `x` (or `g`) header with the given records.
    pub fn pax(&mut self, typeflag: u8, records: &[(&str, &[u8])]) -> &mut RawTar {
        let mut data = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = Hdr::new(b"././@PaxHeader", typeflag);
        h.size = data.len() as u64;
        self.raw(&h, &data)
    }

    /// A GNU `L` (long name) or `K` (long link) header.
    pub fn gnu_long(&mut self, typeflag: u8, name: &[u8]) -> &mut RawTar {
        let mut data = name.to_vec();
        data.push(0);
        let mut h = Hdr::new(b"././@LongLink", typeflag);
        h.size = data.len() as u64;
        self.raw(&h, &data)
    }

    /// End-of-archive marker.
    pub fn end(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes.clone()
    }
}
