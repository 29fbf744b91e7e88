//! [`Chunked`]: a vector that never moves what it holds, for the per-node state of a run.

/// How many elements the first chunk holds (a power of two); each later chunk holds twice as
/// many as the one before.
const FIRST: usize = 16;
const FIRST_BITS: u32 = FIRST.trailing_zeros();

/// A growable vector whose elements stay where they are: it grows by adding a chunk twice the
/// size of the last, never by copying into a larger block. A `Vec` of a run's hundred thousand
/// nodes is copied about twice over while it grows (and each copy faults in fresh pages): a
/// tenth of what adding a node cost. Holds at most twice its length, as a `Vec` may.
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

/// The chunk and the place in it of element `index`. Chunk `k` holds the `FIRST << k`
/// elements from `FIRST * (2^k - 1)` on: so `index + FIRST` has its highest bit at
/// `k + FIRST_BITS`, and below that bit, the place.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let shifted = index + FIRST;
    let top = usize::BITS - 1 - shifted.leading_zeros();
    ((top - FIRST_BITS) as usize, shifted - (1 << top))
}

impl<T> Chunked<T> {
    /// An empty vector; it allocates at its first push.
    pub(crate) const fn new() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// How many elements it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `value` at the end.
    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        let (chunk, _) = locate(self.len);
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(FIRST << chunk));
        }
        self.chunks[chunk].push(value);
        self.len += 1;
    }

    /// The elements in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    #[inline]
    fn index(&self, index: usize) -> &T {
        let (chunk, at) = locate(index);
        &self.chunks[chunk][at]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        let (chunk, at) = locate(index);
        &mut self.chunks[chunk][at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_and_cover_every_index_once() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST - 1), (0, FIRST - 1));
        assert_eq!(locate(FIRST), (1, 0));
        assert_eq!(locate(3 * FIRST - 1), (1, 2 * FIRST - 1));
        assert_eq!(locate(3 * FIRST), (2, 0));
        let mut v = Chunked::new();
        for i in 0..10_000usize {
            v.push(i);
        }
        assert_eq!(v.len(), 10_000);
        assert!((0..10_000).all(|i| v[i] == i));
        assert!(v.iter().copied().eq(0..10_000));
        // No chunk ever grew past the capacity it was made with: nothing moved.
        assert!(v.chunks.iter().enumerate().all(|(k, c)| c.capacity() == FIRST << k));
        v[4321] = 7;
        assert_eq!(v[4321], 7);
    }

    #[test]
    #[should_panic]
    fn an_index_past_the_end_panics() {
        let mut v = Chunked::new();
        v.push(1u8);
        let _ = v[1];
    }
}
