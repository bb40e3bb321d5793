//! Sample types and slice buffers.

use std::fmt;

/// The type of one pixel sample. Preserved end to end: a 16-bit stack gives 16-bit levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleType {
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// 32-bit IEEE float (from float TIFFs; preserved, never quantised).
    F32,
}

impl SampleType {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            SampleType::U8 => 1,
            SampleType::U16 => 2,
            SampleType::F32 => 4,
        }
    }

    /// Short lower-case name: `u8`, `u16` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            SampleType::U8 => "u8",
            SampleType::U16 => "u16",
            SampleType::F32 => "f32",
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for f32 {}
}

/// A pixel sample type the pyramid works on: `u8`, `u16` or `f32`. Sealed.
///
/// The associated arithmetic defines the pyramid contract: integer samples are summed exactly
/// and rounded half up (`(sum + 4) >> 3` for a 2x2x2 block, `(sum + 2) >> 2` for a 2x2 block);
/// `f32` samples are summed in `f64` and divided, then rounded to the nearest `f32`.
pub trait Sample:
    bytemuck::Pod + Default + PartialEq + fmt::Debug + Send + Sync + sealed::Sealed + 'static
{
    /// The matching [`SampleType`].
    const TYPE: SampleType;
    /// Accumulator wide enough for the exact sum of eight samples.
    type Acc: Copy + std::ops::Add<Output = Self::Acc>;
    /// Converts a sample to the accumulator type.
    fn widen(self) -> Self::Acc;
    /// Mean of eight samples from their sum, rounded per the contract.
    fn mean8(sum: Self::Acc) -> Self;
    /// Mean of four samples from their sum, rounded per the contract.
    fn mean4(sum: Self::Acc) -> Self;
    /// The samples of `pixels` if they are of this type.
    fn view(pixels: &Pixels) -> Option<&[Self]>;
    /// The sample vector of `pixels` if it is of this type.
    fn view_mut(pixels: &mut Pixels) -> Option<&mut Vec<Self>>;
    /// Wraps a vector of samples.
    fn wrap(samples: Vec<Self>) -> Pixels;
}

impl Sample for u8 {
    const TYPE: SampleType = SampleType::U8;
    type Acc = u16;
    #[inline(always)]
    fn widen(self) -> u16 {
        u16::from(self)
    }
    #[inline(always)]
    fn mean8(sum: u16) -> u8 {
        // 8 * 255 + 4 < 2^16 and the result is at most 255.
        ((sum + 4) >> 3) as u8
    }
    #[inline(always)]
    fn mean4(sum: u16) -> u8 {
        ((sum + 2) >> 2) as u8
    }
    fn view(pixels: &Pixels) -> Option<&[u8]> {
        match pixels {
            Pixels::U8(v) => Some(v),
            _ => None,
        }
    }
    fn view_mut(pixels: &mut Pixels) -> Option<&mut Vec<u8>> {
        match pixels {
            Pixels::U8(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(samples: Vec<u8>) -> Pixels {
        Pixels::U8(samples)
    }
}

impl Sample for u16 {
    const TYPE: SampleType = SampleType::U16;
    type Acc = u32;
    #[inline(always)]
    fn widen(self) -> u32 {
        u32::from(self)
    }
    #[inline(always)]
    fn mean8(sum: u32) -> u16 {
        // 8 * 65535 + 4 < 2^32 and the result is at most 65535.
        ((sum + 4) >> 3) as u16
    }
    #[inline(always)]
    fn mean4(sum: u32) -> u16 {
        ((sum + 2) >> 2) as u16
    }
    fn view(pixels: &Pixels) -> Option<&[u16]> {
        match pixels {
            Pixels::U16(v) => Some(v),
            _ => None,
        }
    }
    fn view_mut(pixels: &mut Pixels) -> Option<&mut Vec<u16>> {
        match pixels {
            Pixels::U16(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(samples: Vec<u16>) -> Pixels {
        Pixels::U16(samples)
    }
}

impl Sample for f32 {
    const TYPE: SampleType = SampleType::F32;
    type Acc = f64;
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn mean8(sum: f64) -> f32 {
        (sum * 0.125) as f32
    }
    #[inline(always)]
    fn mean4(sum: f64) -> f32 {
        (sum * 0.25) as f32
    }
    fn view(pixels: &Pixels) -> Option<&[f32]> {
        match pixels {
            Pixels::F32(v) => Some(v),
            _ => None,
        }
    }
    fn view_mut(pixels: &mut Pixels) -> Option<&mut Vec<f32>> {
        match pixels {
            Pixels::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(samples: Vec<f32>) -> Pixels {
        Pixels::F32(samples)
    }
}

/// The samples of one slice, row-major, in native byte order.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Pixels {
    /// 8-bit samples.
    U8(Vec<u8>),
    /// 16-bit samples.
    U16(Vec<u16>),
    /// 32-bit float samples.
    F32(Vec<f32>),
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pixels::{}[{}]", self.sample_type(), self.len())
    }
}

impl Pixels {
    /// `len` zero samples of type `ty`.
    pub fn zeroed(ty: SampleType, len: usize) -> Pixels {
        match ty {
            SampleType::U8 => Pixels::U8(vec![0; len]),
            SampleType::U16 => Pixels::U16(vec![0; len]),
            SampleType::F32 => Pixels::F32(vec![0.0; len]),
        }
    }

    /// The sample type.
    pub fn sample_type(&self) -> SampleType {
        match self {
            Pixels::U8(_) => SampleType::U8,
            Pixels::U16(_) => SampleType::U16,
            Pixels::F32(_) => SampleType::F32,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated for samples (at least the samples' bytes).
    pub(crate) fn capacity_bytes(&self) -> usize {
        match self {
            Pixels::U8(v) => v.capacity(),
            Pixels::U16(v) => v.capacity() * 2,
            Pixels::F32(v) => v.capacity() * 4,
        }
    }

    /// The samples as bytes, native byte order.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Pixels::U8(v) => v,
            Pixels::U16(v) => bytemuck::cast_slice(v),
            Pixels::F32(v) => bytemuck::cast_slice(v),
        }
    }

    /// The samples as mutable bytes, native byte order (decoders write straight into them).
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Pixels::U8(v) => v,
            Pixels::U16(v) => bytemuck::cast_slice_mut(v),
            Pixels::F32(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// Makes this buffer hold `len` samples of type `ty`, reusing the allocation when the type
    /// already matches. New samples are zero; existing ones are left as they are.
    pub(crate) fn reshape(&mut self, ty: SampleType, len: usize) {
        // An empty buffer is replaced by a zeroed allocation: fresh pages from the system are
        // zero already, where growing would write every zero (a second pass over the memory).
        if self.sample_type() != ty || self.is_empty() {
            *self = Pixels::zeroed(ty, len);
            return;
        }
        match self {
            Pixels::U8(v) => v.resize(len, 0),
            Pixels::U16(v) => v.resize(len, 0),
            Pixels::F32(v) => v.resize(len, 0.0),
        }
    }
}

/// One grayscale slice: its size and its samples.
#[derive(Clone, PartialEq)]
pub struct Slice {
    width: u32,
    height: u32,
    pixels: Pixels,
}

impl fmt::Debug for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slice")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("sample_type", &self.pixels.sample_type())
            .finish()
    }
}

impl Slice {
    /// A slice of zeros.
    pub fn zeroed(width: u32, height: u32, ty: SampleType) -> Slice {
        Slice {
            width,
            height,
            pixels: Pixels::zeroed(ty, width as usize * height as usize),
        }
    }

    /// Wraps samples as a slice.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the sample count is not
    /// `width * height`.
    pub fn new(width: u32, height: u32, pixels: Pixels) -> crate::error::Result<Slice> {
        let want = width as usize * height as usize;
        if pixels.len() != want {
            return Err(crate::error::Error::invalid(
                "slice samples",
                format!(
                    "{} samples given for {width} x {height} (= {want})",
                    pixels.len()
                ),
            ));
        }
        Ok(Slice {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The sample type.
    pub fn sample_type(&self) -> SampleType {
        self.pixels.sample_type()
    }

    /// The samples, row-major.
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    /// Takes the samples out.
    pub fn into_pixels(self) -> Pixels {
        self.pixels
    }

    /// The samples as a typed slice, if they are of type `T`.
    pub fn samples<T: Sample>(&self) -> Option<&[T]> {
        T::view(&self.pixels)
    }

    /// Resizes this buffer for a `width` x `height` slice of `ty`, reusing its allocation.
    pub(crate) fn reshape(&mut self, width: u32, height: u32, ty: SampleType) {
        self.width = width;
        self.height = height;
        self.pixels.reshape(ty, width as usize * height as usize);
    }

    /// Bytes allocated for samples (see [`Pixels::capacity_bytes`]).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.pixels.capacity_bytes()
    }

    /// Mutable access to the samples (the length must stay `width * height`).
    pub(crate) fn pixels_mut(&mut self) -> &mut Pixels {
        &mut self.pixels
    }
}
