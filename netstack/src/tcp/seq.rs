//! Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4; upstream's
//! `pkg/tcpip/seqnum`).

/// `a < b` in sequence space.
pub(crate) fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub(crate) fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `a > b` in sequence space.
pub(crate) fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a >= b` in sequence space.
pub(crate) fn ge(a: u32, b: u32) -> bool {
    le(b, a)
}

/// The later of two sequence numbers.
pub(crate) fn max(a: u32, b: u32) -> u32 {
    if gt(a, b) {
        a
    } else {
        b
    }
}

/// Whether `x` lies in `[start, start + len)`.
pub(crate) fn in_window(x: u32, start: u32, len: u32) -> bool {
    x.wrapping_sub(start) < len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(u32::MAX, 0));
        assert!(gt(5, u32::MAX - 5));
        assert!(le(7, 7) && ge(7, 7));
        assert_eq!(max(u32::MAX, 3), 3);
        assert!(in_window(2, u32::MAX - 1, 5));
        assert!(!in_window(3, u32::MAX - 1, 5));
        assert!(!in_window(0, 0, 0));
    }
}
