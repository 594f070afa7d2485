//! A stable sort for the few short lists the server sorts (a handful of
//! refused addresses, TLS suites, an S3 request's headers and query) and for
//! a page of a bucket's version history (in order already but on moto, so
//! sorted in linear time): std's sort is compiled anew, 5-8 KiB of aarch64
//! code, for every element type and comparison, and the binary has a size
//! budget. Long lists (directory listings, a scrub's batches) keep std's
//! sort.

/// Sorts `items` so that no element comes after one it is `less` than, keeping
/// the order of equal elements: the result std's `sort_by` gives. Insertion
/// sort: quadratic, so only for lists of a few dozen at most.
pub(crate) fn sort_short_by<T>(items: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(&items[j], &items[j - 1]) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sort_short_by;

    #[test]
    fn sorts_as_std_does_keeping_equal_elements_in_order() {
        let cases: [&[(u8, char)]; 4] = [
            &[],
            &[(1, 'a')],
            &[(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e'), (0, 'f')],
            &[(0, 'a'), (0, 'b'), (1, 'c'), (1, 'd')],
        ];
        for case in cases {
            let mut ours = case.to_vec();
            sort_short_by(&mut ours, |a, b| a.0 < b.0);
            let mut std = case.to_vec();
            std.sort_by_key(|item| item.0);
            assert_eq!(ours, std);
        }
    }
}
