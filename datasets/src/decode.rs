//! One encoded image (PNG or JPEG) as a model input: converted to the model's channel count
//! and resized to its height and width, channels first.

use crate::limits::{MAX_DECODE_ALLOC, MAX_DECODE_SIDE, MAX_IMAGE_SIDE};
use image::imageops::FilterType;
use image::ImageReader;
use std::io::Cursor;

/// The decoder limits of every image IDunno decodes: sides of at most [`MAX_DECODE_SIDE`]
/// pixels and at most [`MAX_DECODE_ALLOC`] bytes allocated.
pub fn decode_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// Why one image cannot be a model input. Nothing changed; the image (or the model) is at
/// fault, so trying again does not help.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The model takes another number of channels than 1 or 3.
    #[error("models with {0} input channels take no images")]
    Channels(usize),
    /// The model's input is larger than [`MAX_IMAGE_SIDE`].
    #[error("a model input side is at most {MAX_IMAGE_SIDE} pixels (MAX_IMAGE_SIDE), not {width}x{height}")]
    InputSide {
        /// Input width.
        width: usize,
        /// Input height.
        height: usize,
    },
    /// Neither PNG nor JPEG.
    #[error("not a PNG or JPEG image")]
    Unsupported,
    /// The image's header announces more than [`decode_limits`] allow.
    #[error("the image is beyond the decoder's limits ({0}): its sides are at most {MAX_DECODE_SIDE} pixels (MAX_DECODE_SIDE) and decoding may take at most {MAX_DECODE_ALLOC} bytes (MAX_DECODE_ALLOC)")]
    Limits(String),
    /// A damaged or truncated image.
    #[error("not a readable image: {0}")]
    Unreadable(String),
}

/// Decodes `bytes` into `C x H x W` bytes for `shape = [C, H, W]` (C is 1 or 3, H and W at
/// most [`MAX_IMAGE_SIDE`]). An image of another size is resized (triangle filter); a colour
/// image given to a one-channel model is converted to grey, and a grey one to RGB for a
/// three-channel model. The decoder works within [`decode_limits`]: a header announcing a
/// larger image is refused before any pixel is decoded.
pub fn image_to_chw(bytes: &[u8], shape: [usize; 3]) -> Result<Vec<u8>, ImageError> {
    let [c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(ImageError::Channels(c));
    }
    let side = MAX_IMAGE_SIDE as usize;
    if !(1..=side).contains(&h) || !(1..=side).contains(&w) {
        return Err(ImageError::InputSide {
            width: w,
            height: h,
        });
    }
    let img = decode(bytes)?;
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    if c == 1 {
        return Ok(img.to_luma8().into_raw());
    }
    let hwc = img.to_rgb8().into_raw();
    let mut chw = vec![0u8; hwc.len()];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            chw[ch * h * w + i] = *v;
        }
    }
    Ok(chw)
}

/// Decodes a PNG or JPEG within [`decode_limits`].
fn decode(bytes: &[u8]) -> Result<image::DynamicImage, ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Unreadable(e.to_string()))?;
    reader.limits(decode_limits());
    reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(_) => ImageError::Unsupported,
        image::ImageError::Limits(l) => ImageError::Limits(l.to_string()),
        other => ImageError::Unreadable(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage};

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_colour_image_becomes_channels_first_or_grey() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([10, 20, 30]));
        img.put_pixel(1, 0, Rgb([40, 50, 60]));
        let bytes = png(img.into());
        assert_eq!(
            image_to_chw(&bytes, [3, 1, 2]).unwrap(),
            [10, 40, 20, 50, 30, 60]
        );
        assert_eq!(image_to_chw(&bytes, [1, 1, 2]).unwrap().len(), 2);
    }

    #[test]
    fn other_sizes_are_resized() {
        let bytes = png(image::DynamicImage::new_luma8(56, 56));
        assert_eq!(image_to_chw(&bytes, [1, 28, 28]).unwrap().len(), 784);
    }

    #[test]
    fn corrupt_bytes_are_a_clear_error() {
        let err = image_to_chw(b"not an image at all", [1, 28, 28]).unwrap_err();
        assert!(matches!(err, ImageError::Unsupported), "{err}");
        let mut bytes = png(image::DynamicImage::new_luma8(28, 28));
        bytes.truncate(bytes.len() / 2);
        let err = image_to_chw(&bytes, [1, 28, 28]).unwrap_err();
        assert!(matches!(err, ImageError::Unreadable(_)), "{err}");
    }
}
