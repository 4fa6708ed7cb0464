/**
 * `RegistryCredential` (`regcred.dev/v1alpha1`): the schema, written once, from which come both the
 * CRD in `crds/` and `config/crd/` (`npm run generate`, checked by a test) and the TypeScript types
 * below.
 */
import type { FromSchema, SchemaNode } from './schema-types.ts';

export const GROUP = 'regcred.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'RegistryCredential';
export const PLURAL = 'registrycredentials';

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
/** A qualified label key, `[prefix/]name`, as a CEL regular expression. */
const LABEL_KEY_CEL =
  "'^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'";

const labelSelector = (what: string) =>
  ({
    type: 'object',
    description:
      `A Kubernetes label selector on ${what}: matchLabels and matchExpressions are ANDed. ` +
      `An empty selector ({}) selects every ${what.replace(/s$/, '')}.`,
    properties: {
      matchLabels: {
        type: 'object',
        description: 'Labels that must all be present with exactly these values.',
        maxProperties: 32,
        additionalProperties: { type: 'string', maxLength: 63, pattern: LABEL_VALUE },
        'x-kubernetes-validations': [
          {
            rule: `self.all(k, size(k) <= 317 && k.matches(${LABEL_KEY_CEL}))`,
            message: 'every key must be a valid label key ([prefix/]name)',
          },
        ],
      },
      matchExpressions: {
        type: 'array',
        description: 'Requirements on labels, all of which must hold.',
        maxItems: 32,
        'x-kubernetes-list-type': 'atomic',
        items: {
          type: 'object',
          description: 'One requirement: a label key, an operator and, for In and NotIn, the values.',
          required: ['key', 'operator'],
          properties: {
            key: { type: 'string', description: 'The label key the requirement is about.', maxLength: 317 },
            operator: {
              type: 'string',
              description: 'In, NotIn, Exists or DoesNotExist.',
              enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'],
            },
            values: {
              type: 'array',
              description: 'For In and NotIn, the values to compare with (at least one); empty otherwise.',
              maxItems: 64,
              'x-kubernetes-list-type': 'atomic',
              items: { type: 'string', maxLength: 63, pattern: LABEL_VALUE },
            },
          },
          'x-kubernetes-validations': [
            {
              rule: `self.key.matches(${LABEL_KEY_CEL})`,
              message: 'key must be a valid label key ([prefix/]name)',
            },
            {
              rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
              message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
            },
          ],
        },
      },
    },
  }) as const satisfies SchemaNode;

const condition = {
  type: 'object',
  description: 'A condition in the Kubernetes convention (metav1.Condition).',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: {
      type: 'string',
      description:
        'The aspect this condition reports: Ready, SourceValid, and (only while True) Reconciling or Stalled.',
      maxLength: 316,
    },
    status: { type: 'string', description: 'True, False or Unknown.', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: {
      type: 'integer',
      description: 'The metadata.generation this condition was computed from.',
      minimum: 0,
    },
    lastTransitionTime: {
      type: 'string',
      format: 'date-time',
      description: 'When status last changed from one value to another.',
    },
    reason: {
      type: 'string',
      description: 'A machine-readable CamelCase reason; see the README for each one and what to do.',
      maxLength: 1024,
    },
    message: { type: 'string', description: 'What happened, for humans.', maxLength: 32768 },
  },
} as const satisfies SchemaNode;

export const specSchema = {
  type: 'object',
  description: 'Which credential to propagate, to which namespaces and ServiceAccounts, and how.',
  required: ['source', 'namespaces'],
  properties: {
    source: {
      type: 'object',
      description: 'Where the credential comes from.',
      required: ['secretRef'],
      properties: {
        secretRef: {
          type: 'object',
          description:
            'The source Secret, of type kubernetes.io/dockerconfigjson (or the legacy kubernetes.io/dockercfg). ' +
            "Its namespace must be one of the operator's allowed source namespaces (--source-namespaces).",
          required: ['namespace', 'name'],
          properties: {
            namespace: {
              type: 'string',
              description: 'Namespace of the source Secret.',
              maxLength: 63,
              pattern: DNS_LABEL,
            },
            name: {
              type: 'string',
              description: 'Name of the source Secret.',
              maxLength: 253,
              pattern: DNS_SUBDOMAIN,
            },
          },
        },
      },
    },
    secretName: {
      type: 'string',
      description:
        'Name of the copy in each target namespace, and of the imagePullSecrets entry that points at it. ' +
        'Defaults to the name of the RegistryCredential.',
      maxLength: 253,
      pattern: DNS_SUBDOMAIN,
    },
    namespaces: {
      type: 'object',
      description:
        'The target namespaces: those named plus those matching the selector, minus those matching an exclude ' +
        "pattern. The source Secret's own namespace is never a target; terminating namespaces are left alone.",
      properties: {
        names: {
          type: 'array',
          description: 'Namespaces selected by name.',
          maxItems: 1000,
          'x-kubernetes-list-type': 'set',
          items: { type: 'string', maxLength: 63, pattern: DNS_LABEL },
        },
        selector: labelSelector('namespaces'),
        exclude: {
          type: 'array',
          description: 'Glob patterns (* and ?) on namespace names that are never targets, e.g. "kube-*".',
          maxItems: 64,
          'x-kubernetes-list-type': 'set',
          items: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[-a-z0-9*?]+$' },
        },
      },
      'x-kubernetes-validations': [
        {
          rule: '(has(self.names) && size(self.names) > 0) || has(self.selector)',
          message: 'select namespaces by names, by selector, or both',
        },
      ],
    },
    serviceAccounts: {
      type: 'object',
      description:
        'The ServiceAccounts in each target namespace whose imagePullSecrets get the copy: those named plus ' +
        'those matching the selector. Omitted: only "default". Empty names and no selector: copies only.',
      default: { names: ['default'] },
      properties: {
        names: {
          type: 'array',
          description: 'ServiceAccounts selected by name; "*" selects every ServiceAccount.',
          maxItems: 256,
          'x-kubernetes-list-type': 'set',
          items: {
            type: 'string',
            maxLength: 253,
            pattern: '^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$',
          },
        },
        selector: labelSelector('ServiceAccounts'),
      },
    },
    conflictPolicy: {
      type: 'string',
      description:
        'What to do when a target namespace already holds a Secret of that name that regcred does not own. ' +
        "Skip (default): leave it and that namespace's ServiceAccounts alone, and report the conflict. " +
        'Adopt: take it over if it is a kubernetes.io/dockerconfigjson Secret; from then on it is a copy.',
      enum: ['Skip', 'Adopt'],
      default: 'Skip',
    },
    suspend: {
      type: 'boolean',
      description: 'Stops every write for this RegistryCredential while true; deleting it still cleans up.',
      default: false,
    },
  },
} as const satisfies SchemaNode;

export const statusSchema = {
  type: 'object',
  description: 'What the operator last observed and did. Written only when something in it changes.',
  // Until the operator has written a status, observedGeneration is -1 (as Flux's own types do), so
  // kstatus reads a new RegistryCredential as InProgress, not as Current.
  default: { observedGeneration: -1 },
  properties: {
    observedGeneration: {
      type: 'integer',
      description:
        'The metadata.generation this status was computed from; -1 until the operator has written one.',
      minimum: -1,
    },
    conditions: {
      type: 'array',
      description:
        'Ready: every selected namespace holds the current credential and every selected ServiceAccount points at it ' +
        '(True with reason Suspended while spec.suspend is true). ' +
        'SourceValid: the source Secret exists, is allowed, and holds a credential kubelet can parse. ' +
        'Reconciling (present only while True): copies are being written, failed writes retried, or cleaned up on deletion. ' +
        'Stalled (present only while True): regcred cannot make progress until someone changes the source, the spec, ' +
        'a conflicting Secret, or what makes writes fail.',
      maxItems: 8,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: condition,
    },
    source: { type: 'string', description: 'The source Secret as namespace/name.', maxLength: 317 },
    secretName: {
      type: 'string',
      description: 'The name of the copies (spec.secretName or its default).',
      maxLength: 253,
    },
    synced: {
      type: 'string',
      description: 'Synced namespaces out of selected ones, e.g. "998/1000".',
      maxLength: 32,
    },
    namespaces: {
      type: 'object',
      description: 'Counts over the selected namespaces.',
      properties: {
        selected: {
          type: 'integer',
          description: 'Namespaces selected (terminating ones not counted).',
          minimum: 0,
        },
        synced: {
          type: 'integer',
          description:
            'Namespaces holding the current credential, with every selected ServiceAccount pointing at it.',
          minimum: 0,
        },
        failed: { type: 'integer', description: 'Namespaces where the last attempt failed.', minimum: 0 },
        conflicting: {
          type: 'integer',
          description: 'Namespaces where a Secret of that name belongs to someone else.',
          minimum: 0,
        },
      },
    },
    serviceAccounts: {
      type: 'object',
      description: 'Counts over the selected ServiceAccounts.',
      properties: {
        patched: {
          type: 'integer',
          description: "ServiceAccounts whose imagePullSecrets reference this credential's copy.",
          minimum: 0,
        },
      },
    },
    failures: {
      type: 'array',
      description: 'The first failing or conflicting namespaces (at most 10, by name).',
      maxItems: 10,
      'x-kubernetes-list-type': 'atomic',
      items: {
        type: 'object',
        description: 'One namespace that is not synced, and why.',
        required: ['namespace', 'reason', 'message'],
        properties: {
          namespace: { type: 'string', description: 'The namespace.', maxLength: 63 },
          reason: { type: 'string', description: 'A machine-readable CamelCase reason.', maxLength: 128 },
          message: { type: 'string', description: 'What went wrong, for humans.', maxLength: 1024 },
        },
      },
    },
    sourceResourceVersion: {
      type: 'string',
      description: 'The resourceVersion of the source Secret whose credential every synced copy holds.',
      maxLength: 64,
    },
    lastRotationTime: {
      type: 'string',
      format: 'date-time',
      description: 'When a changed credential last finished propagating to every selected namespace.',
    },
    failingSince: {
      type: 'string',
      format: 'date-time',
      description:
        "While Ready's reason is Failed: since when writes have kept failing. After the operator's --stall-after, " +
        'Stalled becomes True.',
    },
  },
} as const satisfies SchemaNode;

export type RegistryCredentialSpec = FromSchema<typeof specSchema>;
export type RegistryCredentialStatus = FromSchema<typeof statusSchema>;
export type Condition = FromSchema<typeof condition>;
export type LabelSelector = FromSchema<ReturnType<typeof labelSelector>>;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface RegistryCredential {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: RegistryCredentialSpec;
  status?: RegistryCredentialStatus;
}
