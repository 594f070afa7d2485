//! Apache's `$apr1$` password hash (MD5-crypt with Apache's magic string), the
//! default of the `htpasswd` tool, which rest-server does not accept.

use md5::{Digest, Md5};

const MAGIC: &[u8] = b"$apr1$";
/// crypt(3)'s base-64 alphabet.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Apache uses at most 8 salt characters.
const MAX_SALT: usize = 8;

/// The full `$apr1$salt$hash` string for `password` and `salt`.
pub(crate) fn hash(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(MAX_SALT)];
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut left = password.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();

    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }

    let d = digest;
    let mut out = String::with_capacity(MAGIC.len() + salt.len() + 1 + 22);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let value = (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]);
        push_base64(&mut out, value, 4);
    }
    push_base64(&mut out, u32::from(d[11]), 2);
    out
}

fn push_base64(out: &mut String, mut value: u32, count: usize) {
    for _ in 0..count {
        out.push(char::from(ITOA64[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

/// Checks `password` against a stored `$apr1$salt$hash` string.
pub(crate) fn verify(password: &[u8], stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix("$apr1$") else {
        return false;
    };
    let Some((salt, _)) = rest.split_once('$') else {
        return false;
    };
    let computed = hash(password, salt.as_bytes());
    super::compare::constant_time_eq(computed.as_bytes(), stored.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_apache_hashes() {
        // Produced by `openssl passwd -apr1 -salt ... ...` (same algorithm as htpasswd -m).
        for (password, stored) in KNOWN {
            assert!(verify(password.as_bytes(), stored), "{password} {stored}");
            assert!(!verify(b"wrong", stored));
        }
    }

    const KNOWN: &[(&str, &str)] = &[
        ("password", "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"),
        ("correct horse", "$apr1$ab$2AViYtCrOwG81vjtLDlBI0"),
        ("x", "$apr1$12345678$zbBEMgfXu4mAHPrplrtNt."),
    ];
}
