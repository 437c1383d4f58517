//! LZString's `decompressFromBase64`, as posthog-js's `lz64` compression uses it, with the
//! output bounded while it is produced (a small input can expand enormously).

use crate::WireError;
use crate::error::size;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Each byte's 6-bit value; `=` is 0 and a space is `+` (a form decoder's `+`); other
/// bytes are [`NOT_BASE64`].
const VALUES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = 0;
    table[b' ' as usize] = 62;
    table
};
const NOT_BASE64: u8 = 0xff;

struct Bits<'a> {
    input: &'a [u8],
    index: usize,
    value: u8,
    position: u8,
}

impl Bits<'_> {
    fn next(&mut self) -> Result<bool, WireError> {
        if self.position == 0 {
            let c = *self
                .input
                .get(self.index)
                .ok_or_else(|| WireError::invalid("lz64 payload ends in the middle of a value"))?;
            self.index += 1;
            self.value = match VALUES[c as usize] {
                NOT_BASE64 => {
                    return Err(WireError::invalid(format!(
                        "lz64 payload has a character outside base64: {:?}",
                        c as char
                    )));
                }
                v => v,
            };
            self.position = 32;
        }
        let bit = self.value & self.position != 0;
        self.position >>= 1;
        Ok(bit)
    }

    fn read(&mut self, n: u32) -> Result<u32, WireError> {
        let mut out = 0;
        for i in 0..n {
            if self.next()? {
                out |= 1 << i;
            }
        }
        Ok(out)
    }
}

/// Bytes a piece of UTF-16 text takes in UTF-8. A surrogate counts 2: a pair is one
/// character of 4 bytes, and a lone one is refused when the text is decoded.
fn utf8_len(units: &[u16]) -> usize {
    units
        .iter()
        .map(|&u| match u {
            0..0x80 => 1,
            0x80..0x800 => 2,
            0xd800..=0xdfff => 2,
            _ => 3,
        })
        .sum()
}

/// Decompresses an LZString base64 string; fails once the output, as UTF-8, passes `max`
/// bytes.
///
/// Every dictionary entry is a piece of the output (the previous piece and the first unit
/// of the next, which follows it), so the dictionary holds ranges of the output rather
/// than copies: no allocation for each code.
pub fn decompress_base64(input: &str, max: usize) -> Result<String, WireError> {
    let corrupt = || WireError::invalid("lz64 payload is corrupt: it refers to an unknown entry");
    let too_large = || {
        WireError::TooLarge(format!(
            "decoded payload is larger than the {} limit",
            size(max)
        ))
    };
    let mut bits = Bits {
        input: input.as_bytes(),
        index: 0,
        value: 0,
        position: 0,
    };
    // (start, length) in `out`; codes 0, 1 and 2 are not entries.
    let mut dict: Vec<(usize, usize)> = vec![(0, 0); 3];
    let mut out: Vec<u16> = Vec::new();
    let mut out_bytes = 0usize;
    let mut enlarge_in: u32 = 4;
    let mut num_bits: u32 = 3;

    let first = match bits.read(2)? {
        0 => bits.read(8)? as u16,
        1 => bits.read(16)? as u16,
        _ => return Ok(String::new()),
    };
    dict.push((0, 1));
    let mut w = (0, 1);
    out.push(first);
    out_bytes += utf8_len(&[first]);
    if out_bytes > max {
        return Err(too_large());
    }
    loop {
        let mut code = bits.read(num_bits)? as usize;
        // A literal: its entry is the unit about to be written.
        let mut literal = None;
        match code {
            0 | 1 => {
                let width = if code == 0 { 8 } else { 16 };
                literal = Some(bits.read(width)? as u16);
                dict.push((out.len(), 1));
                code = dict.len() - 1;
                enlarge_in -= 1;
            }
            2 => break,
            _ => {}
        }
        if enlarge_in == 0 {
            enlarge_in = 1 << num_bits;
            num_bits += 1;
        }
        // The piece: a range of `out` and a unit written after it (a literal, or the first
        // unit of `w`); measured before it is written, so that the output never passes the
        // limit.
        let (from, len, then_first) = if let Some(unit) = literal {
            (out.len(), 0, Some(unit))
        } else if let Some(&(s, len)) = dict.get(code) {
            (s, len, None)
        } else if code == dict.len() {
            // The previous piece and its own first unit.
            (w.0, w.1, Some(out[w.0]))
        } else {
            return Err(corrupt());
        };
        out_bytes += utf8_len(&out[from..from + len]) + then_first.map_or(0, |u| utf8_len(&[u]));
        if out_bytes > max {
            return Err(too_large());
        }
        let start = out.len();
        out.extend_from_within(from..from + len);
        out.extend(then_first);
        let entry = (start, out.len() - start);
        // The previous piece and the first unit of this one, which follows it.
        dict.push((w.0, w.1 + 1));
        enlarge_in -= 1;
        w = entry;
        if enlarge_in == 0 {
            enlarge_in = 1 << num_bits;
            num_bits += 1;
        }
    }
    String::from_utf16(&out)
        .map_err(|_| WireError::invalid("lz64 payload is not valid UTF-16 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_reference_encoder() {
        for text in [
            "",
            "a",
            "hello hello hello",
            r#"[{"event":"x","properties":{"ü":"€😀"}}]"#,
        ] {
            let packed = lz_str::compress_to_base64(text);
            assert_eq!(decompress_base64(&packed, 1 << 20).unwrap(), text);
        }
        let long: String = (0..5000)
            .map(|i| format!("k{}:{};", i % 97, i % 13))
            .collect();
        let packed = lz_str::compress_to_base64(&long);
        assert_eq!(decompress_base64(&packed, 1 << 20).unwrap(), long);
    }

    #[test]
    fn stops_at_the_limit() {
        let packed = lz_str::compress_to_base64(&"a".repeat(100_000));
        assert!(matches!(
            decompress_base64(&packed, 1000),
            Err(WireError::TooLarge(_))
        ));
    }

    /// The limit is in bytes of the UTF-8 text the payload decodes to: characters of
    /// three or four bytes, one or two UTF-16 units each, count for what they weigh.
    #[test]
    fn the_limit_counts_utf8_bytes() {
        for (ch, bytes) in [("€", 3), ("😀", 4), ("é", 2)] {
            let max = 999;
            let under = ch.repeat(max / bytes);
            let over = ch.repeat(max / bytes + 1);
            assert_eq!(over.len(), (max / bytes + 1) * bytes);
            assert!(over.len() > max && under.len() <= max);
            assert_eq!(
                decompress_base64(&lz_str::compress_to_base64(&under), max).unwrap(),
                under,
                "{ch}"
            );
            assert!(
                matches!(
                    decompress_base64(&lz_str::compress_to_base64(&over), max),
                    Err(WireError::TooLarge(_))
                ),
                "{} bytes of {ch} against a limit of {max}",
                over.len()
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decompress_base64("!!!!", 1000).is_err());
        assert!(decompress_base64("NoIgxg", 1000).is_err());
    }
}
