/**
 * The CustomResourceDefinition for RegistryCredential, generated from the schema in v1alpha1.ts
 * (its one source): `npm run generate` writes it to crds/ and config/crd/.
 */
import { GROUP, KIND, PLURAL, specSchema, statusSchema, VERSION } from './v1alpha1.ts';

/** The CustomResourceDefinition, as applied to a cluster and written to `crds/` and `config/crd/`. */
export function customResourceDefinition() {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: 'registrycredential',
        shortNames: ['regcred'],
        categories: ['all-regcred'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Source', type: 'string', jsonPath: '.status.source', description: 'The source Secret.' },
            {
              name: 'Secret',
              type: 'string',
              jsonPath: '.status.secretName',
              description: 'Name of the copies.',
            },
            {
              name: 'Synced',
              type: 'string',
              jsonPath: '.status.synced',
              description: 'Synced/selected namespaces.',
            },
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'RegistryCredential keeps a registry pull credential (a kubernetes.io/dockerconfigjson Secret) copied ' +
                'into selected namespaces and referenced from selected ServiceAccounts.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'The API version: regcred.dev/v1alpha1.' },
                kind: { type: 'string', description: 'RegistryCredential.' },
                metadata: { type: 'object' },
                spec: specSchema,
                status: statusSchema,
              },
              'x-kubernetes-validations': [
                {
                  rule: 'size(self.metadata.name) <= 63',
                  message: 'the name must be at most 63 characters: it labels every copy',
                },
              ],
            },
          },
        },
      ],
    },
  };
}
