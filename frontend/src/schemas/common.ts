// Shared pieces of the API schemas.
import { z } from 'zod';

/** A number or `null`; absent counts as `null`. */
export const nullableNumber = z.number().nullable().default(null);
/** A string or `null`; absent counts as `null`. */
export const nullableString = z.string().nullable().default(null);
