/**
 * Derives TypeScript types from an OpenAPI v3 schema written `as const`, for the subset of
 * structural schemas that CRDs use here: objects with `properties`/`required`, maps
 * (`additionalProperties`), arrays, strings (with `enum` as a union), booleans and integers.
 *
 * With it the CRD schema is the one source of truth: the types cannot drift from it.
 */
type Simplify<T> = { [K in keyof T]: T[K] } & {};

type RequiredKeys<S> = S extends { required: readonly (infer R)[] } ? R : never;

type ObjectOf<P, R> = Simplify<
  { -readonly [K in keyof P as K extends R ? K : never]: FromSchema<P[K]> } & {
    -readonly [K in keyof P as K extends R ? never : K]?: FromSchema<P[K]>;
  }
>;

export type FromSchema<S> = S extends { enum: readonly (infer E)[] }
  ? E
  : S extends { type: 'string' }
    ? string
    : S extends { type: 'boolean' }
      ? boolean
      : S extends { type: 'integer' | 'number' }
        ? number
        : S extends { type: 'array'; items: infer I }
          ? FromSchema<I>[]
          : S extends { type: 'object'; properties: infer P }
            ? ObjectOf<P, RequiredKeys<S>>
            : S extends { type: 'object'; additionalProperties: infer A }
              ? Record<string, FromSchema<A>>
              : unknown;

/** The shape of the schema objects written here (a subset of JSONSchemaProps). */
export interface SchemaNode {
  type?: 'object' | 'array' | 'string' | 'boolean' | 'integer';
  description?: string;
  properties?: Record<string, SchemaNode>;
  required?: readonly string[];
  additionalProperties?: SchemaNode;
  items?: SchemaNode;
  enum?: readonly string[];
  default?: unknown;
  pattern?: string;
  format?: string;
  maxLength?: number;
  minLength?: number;
  maxItems?: number;
  minItems?: number;
  maxProperties?: number;
  minimum?: number;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: readonly string[];
  'x-kubernetes-validations'?: readonly {
    rule: string;
    message: string;
    reason?: string;
    fieldPath?: string;
  }[];
}
