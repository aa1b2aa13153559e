//! `Value` and `Array` (with a lock), `RawValue` and `RawArray` (without).

use super::OwnerDied;
use super::block::{self, Block, DATA};
use crate::sys::pod;
use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

const fn check_align<T>() {
    assert!(
        align_of::<T>() <= 64,
        "shared values support alignment up to 64"
    );
}

/// Takes a block's lock (waiting at most `timeout`, `None`: for ever) and
/// wraps `guard` as the lock reports: `Err(OwnerDied)` after a dead holder;
/// `None` on timeout.
fn lock_block<G>(
    block: &Block,
    timeout: Option<Duration>,
    guard: impl FnOnce() -> G,
) -> Option<Result<G, OwnerDied<G>>> {
    // A timeout too large for an `Instant` is no deadline at all.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let died = match block.lock(deadline) {
        Ok(state) => state?,
        // Only a self-deadlock (locking twice on one thread) or corrupt
        // memory gets here: programming errors, like std's double lock.
        Err(e) => panic!("multiproc: shared lock failed: {e}"),
    };
    Some(if died {
        Err(OwnerDied(guard()))
    } else {
        Ok(guard())
    })
}

macro_rules! shared_handle {
    ($name:ident) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name {
                    block: self.block.clone(),
                    _item: PhantomData,
                }
            }
        }

        impl<T> Serialize for $name<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.block.serialize(serializer)
            }
        }

        impl<'de, T: Pod> Deserialize<'de> for $name<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let fd = block::deserialize_fd(deserializer)?;
                let block = Block::from_fd(fd, size_of::<T>()).map_err(block::de_error)?;
                Ok($name {
                    block: Arc::new(block),
                    _item: PhantomData,
                })
            }
        }
    };
}

/// One `T` in shared memory with a lock: Python's `multiprocessing.Value`.
///
/// `lock()` gives a guard that dereferences to `&mut T`, so the classic
/// counter (`with v.get_lock(): v.value += 1`) is race-free by
/// construction. `T` is any [`Pod`] type (integers, floats, arrays of them,
/// `#[derive(Pod, Zeroable)]` structs). If a holder dies with the lock, the
/// next `lock()` returns [`OwnerDied`] with the guard.
///
/// ```
/// use multiproc::{Process, Value, worker};
///
/// #[worker]
/// fn add(counter: Value<u64>, times: u64) {
///     for _ in 0..times {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let counter = Value::new(0u64)?;
/// let mut workers: Vec<_> = (0..2).map(|_| Process::new(add, (counter.clone(), 1000))).collect();
/// for w in &mut workers {
///     w.start()?;
/// }
/// for w in &workers {
///     w.join()?;
/// }
/// assert_eq!(counter.load(), 2000);
/// # Ok(())
/// # }
/// ```
pub struct Value<T> {
    block: Arc<Block>,
    _item: PhantomData<T>,
}

shared_handle!(Value);

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.load()).finish()
    }
}

/// The lock of a [`Value`], held: dereferences to the value. Unlocks on
/// drop. Not `Send`: the thread that locked must unlock.
///
/// ```
/// let v = multiproc::Value::new(1u32)?;
/// let mut guard = v.lock().unwrap();
/// *guard += 1; // reads and writes through the guard
/// assert_eq!(*guard, 2);
/// drop(guard); // unlocks
/// assert_eq!(v.load(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ValueGuard<'a, T> {
    block: &'a Block,
    value: &'a mut T,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Value<T> {
    /// A shared value, initialised to `value`.
    ///
    /// ```
    /// let v = multiproc::Value::new(1.5f64)?;
    /// assert_eq!(v.load(), 1.5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> crate::Result<Self> {
        const { check_align::<T>() };
        let block = Block::new(1, size_of::<T>())?;
        pod::write(&block.map, DATA, 0, value);
        Ok(Value {
            block: Arc::new(block),
            _item: PhantomData,
        })
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            block: &self.block,
            value: &mut pod::locked_slice::<T>(&self.block.map, DATA, 1)[0],
            _not_send: PhantomData,
        }
    }

    /// Locks the value, waiting as long as it takes.
    ///
    /// ```
    /// let v = multiproc::Value::new(10i32)?;
    /// *v.lock().unwrap() -= 3;
    /// assert_eq!(v.load(), 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>> {
        lock_block(&self.block, None, || self.guard()).expect("no deadline")
    }

    /// Locks the value if it is free now; `None` if another holder has it.
    ///
    /// ```
    /// let v = multiproc::Value::new(0u8)?;
    /// let held = v.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(v.try_lock().is_none()));
    /// });
    /// drop(held);
    /// assert!(v.try_lock().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn try_lock(&self) -> Option<Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>>> {
        self.lock_timeout(Duration::ZERO)
    }

    /// Locks the value, waiting at most `timeout`; `None` on timeout.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let v = multiproc::Value::new(0u8)?;
    /// let held = v.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(v.lock_timeout(Duration::from_millis(10)).is_none()));
    /// });
    /// drop(held);
    /// *v.lock_timeout(Duration::from_secs(1)).unwrap().unwrap() = 5;
    /// assert_eq!(v.load(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Option<Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>>> {
        lock_block(&self.block, Some(timeout), || self.guard())
    }

    /// Reads the value under the lock (a dead previous owner is ignored).
    ///
    /// ```
    /// use multiproc::{Process, Value, worker};
    ///
    /// #[worker]
    /// fn set(v: Value<i64>) {
    ///     v.store(-1);
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let v = Value::new(0i64)?;
    /// let mut p = Process::new(set, (v.clone(),));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(v.load(), -1); // the child's write
    /// # Ok(())
    /// # }
    /// ```
    pub fn load(&self) -> T {
        *self.lock().unwrap_or_else(OwnerDied::into_guard)
    }

    /// Writes the value under the lock.
    ///
    /// ```
    /// let v = multiproc::Value::new(0u32)?;
    /// v.store(42);
    /// assert_eq!(v.load(), 42);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn store(&self, value: T) {
        *self.lock().unwrap_or_else(OwnerDied::into_guard) = value;
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.block.unlock();
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

/// `len` values of `T` in shared memory with one lock: Python's
/// `multiprocessing.Array`. The guard dereferences to `&mut [T]`.
///
/// ```
/// use multiproc::{Array, Process, worker};
///
/// #[worker]
/// fn fill(a: Array<u32>, from: usize, to: usize) {
///     let mut a = a.lock().unwrap();
///     for i in from..to {
///         a[i] = i as u32 * 10;
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let a = Array::new(6)?;
/// let mut p = Process::new(fill, (a.clone(), 0, 3));
/// let mut q = Process::new(fill, (a.clone(), 3, 6));
/// p.start()?;
/// q.start()?;
/// p.join()?;
/// q.join()?;
/// assert_eq!(a.to_vec(), [0, 10, 20, 30, 40, 50]);
/// # Ok(())
/// # }
/// ```
pub struct Array<T> {
    block: Arc<Block>,
    _item: PhantomData<T>,
}

shared_handle!(Array);

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

/// The lock of an [`Array`], held: dereferences to the elements. Unlocks on
/// drop. Not `Send`.
///
/// ```
/// let a = multiproc::Array::from_slice(&[1u8, 2, 3])?;
/// let mut guard = a.lock().unwrap();
/// guard[0] = 10; // a `&mut [u8]` while the lock is held
/// assert_eq!(guard.iter().sum::<u8>(), 15);
/// drop(guard); // unlocks
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ArrayGuard<'a, T> {
    block: &'a Block,
    items: &'a mut [T],
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements.
    ///
    /// ```
    /// let a = multiproc::Array::<f32>::new(3)?;
    /// assert_eq!(a.to_vec(), [0.0; 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(len: usize) -> crate::Result<Self> {
        const { check_align::<T>() };
        Ok(Array {
            block: Arc::new(Block::new(len, size_of::<T>())?),
            _item: PhantomData,
        })
    }

    /// A copy of `items` in shared memory.
    ///
    /// ```
    /// let a = multiproc::Array::from_slice(&[1u8, 2, 3])?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_slice(items: &[T]) -> crate::Result<Self> {
        let array = Self::new(items.len())?;
        array
            .lock()
            .unwrap_or_else(OwnerDied::into_guard)
            .copy_from_slice(items);
        Ok(array)
    }

    /// The number of elements.
    ///
    /// ```
    /// let a = multiproc::Array::<u64>::new(5)?;
    /// assert_eq!(a.len(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(multiproc::Array::<u8>::new(0)?.is_empty());
    /// assert!(!multiproc::Array::<u8>::new(1)?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            block: &self.block,
            items: pod::locked_slice::<T>(&self.block.map, DATA, self.block.len),
            _not_send: PhantomData,
        }
    }

    /// Locks the array, waiting as long as it takes.
    ///
    /// ```
    /// let a = multiproc::Array::from_slice(&[3u16, 1, 2])?;
    /// a.lock().unwrap().sort();
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>> {
        lock_block(&self.block, None, || self.guard()).expect("no deadline")
    }

    /// Locks the array if it is free now; `None` if another holder has it.
    ///
    /// ```
    /// let a = multiproc::Array::<i32>::new(2)?;
    /// let held = a.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(a.try_lock().is_none()));
    /// });
    /// drop(held);
    /// a.try_lock().unwrap().unwrap()[1] = 4;
    /// assert_eq!(a.to_vec(), [0, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn try_lock(&self) -> Option<Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>>> {
        self.lock_timeout(Duration::ZERO)
    }

    /// Locks the array, waiting at most `timeout`; `None` on timeout.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let a = multiproc::Array::<u8>::new(3)?;
    /// let held = a.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(a.lock_timeout(Duration::from_millis(10)).is_none()));
    /// });
    /// drop(held);
    /// a.lock_timeout(Duration::from_secs(1)).unwrap().unwrap().fill(9);
    /// assert_eq!(a.to_vec(), [9, 9, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Option<Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>>> {
        lock_block(&self.block, Some(timeout), || self.guard())
    }

    /// A copy of the elements, taken under the lock.
    ///
    /// ```
    /// use multiproc::{Array, Process, worker};
    ///
    /// #[worker]
    /// fn double(a: Array<u32>) {
    ///     a.lock().unwrap().iter_mut().for_each(|x| *x *= 2);
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let a = Array::from_slice(&[1, 2, 3])?;
    /// let mut p = Process::new(double, (a.clone(),));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(a.to_vec(), [2, 4, 6]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().unwrap_or_else(OwnerDied::into_guard).to_vec()
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.items
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.items
    }
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.block.unlock();
    }
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.items, f)
    }
}

/// One `T` in shared memory without a lock: Python's `RawValue` (or
/// `Value(..., lock=False)`). Reads and writes are single volatile copies,
/// never references, so they are sound; but without your own synchronization
/// a value wider than a machine word may be read half-written.
///
/// ```
/// let v = multiproc::RawValue::new(7u64)?;
/// v.store(8);
/// assert_eq!(v.load(), 8);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawValue<T> {
    block: Arc<Block>,
    _item: PhantomData<T>,
}

shared_handle!(RawValue);

impl<T: Pod> RawValue<T> {
    /// A shared value, initialised to `value`.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(2.5f32)?;
    /// assert_eq!(v.load(), 2.5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> crate::Result<Self> {
        const { check_align::<T>() };
        let block = Block::new(1, size_of::<T>())?;
        pod::write(&block.map, DATA, 0, value);
        Ok(RawValue {
            block: Arc::new(block),
            _item: PhantomData,
        })
    }

    /// Reads the value.
    ///
    /// ```
    /// use multiproc::{Process, RawValue, worker};
    ///
    /// #[worker]
    /// fn set(v: RawValue<u64>) {
    ///     v.store(u64::MAX);
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let v = RawValue::new(0u64)?;
    /// let mut p = Process::new(set, (v.clone(),));
    /// p.start()?;
    /// p.join()?; // the join orders the child's write before this read
    /// assert_eq!(v.load(), u64::MAX);
    /// # Ok(())
    /// # }
    /// ```
    pub fn load(&self) -> T {
        pod::read(&self.block.map, DATA, 0)
    }

    /// Writes the value.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(0i16)?;
    /// v.store(-7);
    /// assert_eq!(v.load(), -7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn store(&self, value: T) {
        pod::write(&self.block.map, DATA, 0, value)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.load()).finish()
    }
}

/// `len` values of `T` in shared memory without a lock: Python's
/// `RawArray`. Element reads and writes are volatile copies (see
/// [`RawValue`]); bring your own synchronization (a `Lock`, a `Barrier`) to
/// order them between processes.
///
/// ```
/// let a = multiproc::RawArray::<i32>::new(4)?;
/// a.set(2, -1);
/// assert_eq!(a.get(2), Some(-1));
/// assert_eq!(a.get(9), None);
/// assert_eq!(a.to_vec(), [0, 0, -1, 0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawArray<T> {
    block: Arc<Block>,
    _item: PhantomData<T>,
}

shared_handle!(RawArray);

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u16>::new(3)?;
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(len: usize) -> crate::Result<Self> {
        const { check_align::<T>() };
        Ok(RawArray {
            block: Arc::new(Block::new(len, size_of::<T>())?),
            _item: PhantomData,
        })
    }

    /// A copy of `items` in shared memory.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[1.0f64, 2.0])?;
    /// assert_eq!(a.get(1), Some(2.0));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_slice(items: &[T]) -> crate::Result<Self> {
        let array = Self::new(items.len())?;
        for (i, item) in items.iter().enumerate() {
            array.set(i, *item);
        }
        Ok(array)
    }

    /// The number of elements.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u8>::new(7)?;
    /// assert_eq!(a.len(), 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(multiproc::RawArray::<u8>::new(0)?.is_empty());
    /// assert!(!multiproc::RawArray::from_slice(&[1u8])?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// Element `index`, or `None` past the end.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[10u32, 20])?;
    /// assert_eq!(a.get(0), Some(10));
    /// assert_eq!(a.get(2), None); // past the end
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.block.len).then(|| pod::read(&self.block.map, DATA, index))
    }

    /// Sets element `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of bounds, as slice indexing does.
    ///
    /// ```
    /// use multiproc::{Process, RawArray, worker};
    ///
    /// #[worker]
    /// fn mark(a: RawArray<u8>, index: usize) {
    ///     a.set(index, 1);
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let a = RawArray::new(3)?;
    /// let mut p = Process::new(mark, (a.clone(), 1));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(a.to_vec(), [0, 1, 0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set(&self, index: usize, value: T) {
        assert!(
            index < self.block.len,
            "index {index} out of bounds for a RawArray of {}",
            self.block.len
        );
        pod::write(&self.block.map, DATA, index, value)
    }

    /// A copy of every element.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[3i8, -3])?;
    /// a.set(0, 4);
    /// assert_eq!(a.to_vec(), vec![4, -3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.block.len)
            .map(|i| pod::read(&self.block.map, DATA, i))
            .collect()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}
