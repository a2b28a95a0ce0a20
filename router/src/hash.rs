//! The shard hash: fixed forever. Data written today must be found by every future version, so
//! this is a documented function of the key's canonical bytes, never `std::hash`.
//!
//! Canonical bytes of one key value:
//! - an integer (any width; also text that is a decimal integer, e.g. `'42'`): tag `0x01` then
//!   the value as 8 bytes, big-endian two's complement;
//! - a UUID (text in any case, with or without braces/hyphens, or 16 binary bytes): tag `0x02`
//!   then its 16 bytes;
//! - anything else: tag `0x03`, the UTF-8 length as 4 bytes big-endian, then the bytes.
//!
//! Several key columns concatenate their canonical bytes in key order. The hash is 64-bit
//! FNV-1a over those bytes followed by the SplitMix64 finalizer (FNV alone mixes the high bits
//! poorly), and the shard is `hash % shards`.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One value of a shard key, as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Int(i64),
    Uuid([u8; 16]),
    Text(String),
}

impl KeyValue {
    /// Interprets text the way the canonical rules above say.
    pub fn from_text(text: &str) -> KeyValue {
        if let Ok(i) = text.trim().parse::<i64>() {
            return KeyValue::Int(i);
        }
        if let Some(uuid) = parse_uuid(text) {
            return KeyValue::Uuid(uuid);
        }
        KeyValue::Text(text.to_owned())
    }

    /// A floating-point key (a node's REAL value). An integral value in `i64`'s range is that
    /// integer, as the router reads the literal `2` or the text `'2'` (and `2.0 = 2` in SQL);
    /// any other value is its shortest decimal text (`1.5`, `NaN`, `Infinity`), as the router
    /// reads a text parameter spelled that way. Other spellings of the same real (`'1.50'`)
    /// hash differently: a real shard key is only as good as its clients' spelling.
    pub fn from_real(value: f64) -> KeyValue {
        // 2^63 as f64; every integral f64 in [-2^63, 2^63) converts exactly.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
            return KeyValue::Int(value as i64);
        }
        let text = if value.is_nan() {
            "NaN".to_owned()
        } else if value.is_infinite() {
            if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        } else {
            value.to_string()
        };
        KeyValue::Text(text)
    }

    /// A binary key (a node's BLOB value): 16 bytes are a UUID; other lengths are the text
    /// Postgres prints for a `bytea` (`\x0102`), as a text-format parameter carries it.
    pub fn from_bytes(bytes: &[u8]) -> KeyValue {
        if let Ok(uuid) = <[u8; 16]>::try_from(bytes) {
            return KeyValue::Uuid(uuid);
        }
        let mut text = String::with_capacity(2 + 2 * bytes.len());
        text.push_str("\\x");
        for byte in bytes {
            text.push_str(&format!("{byte:02x}"));
        }
        KeyValue::Text(text)
    }

    /// A NULL key: the empty text. The proxy routes a NULL key parameter there, so a row
    /// written with a NULL key lives on that shard (a NULL literal key routes nowhere: such an
    /// INSERT is refused and `key = NULL` matches no row).
    pub fn null() -> KeyValue {
        KeyValue::Text(String::new())
    }

    fn write_canonical(&self, hash: &mut Fnv) {
        match self {
            KeyValue::Int(i) => {
                hash.write(&[0x01]);
                hash.write(&i.to_be_bytes());
            }
            KeyValue::Uuid(bytes) => {
                hash.write(&[0x02]);
                hash.write(bytes);
            }
            KeyValue::Text(text) => {
                hash.write(&[0x03]);
                hash.write(&(text.len() as u32).to_be_bytes());
                hash.write(text.as_bytes());
            }
        }
    }
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}');
    let hex: String = trimmed.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if trimmed.contains('-') && trimmed.len() != 36 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

/// FNV-1a 64 then SplitMix64's finalizer.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    hash.write(bytes);
    hash.finish()
}

/// FNV-1a 64 over bytes written in pieces: the same as over their concatenation.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(FNV_OFFSET)
    }

    /// The hash of everything written, with SplitMix64's finalizer.
    fn finish(self) -> u64 {
        splitmix64(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a (possibly multi-column) key: [`stable_hash`] of the concatenated canonical
/// bytes, computed without gathering them (a node calls this once per row it scans).
pub fn key_hash(values: &[KeyValue]) -> u64 {
    let mut hash = Fnv::new();
    for value in values {
        value.write_canonical(&mut hash);
    }
    hash.finish()
}
