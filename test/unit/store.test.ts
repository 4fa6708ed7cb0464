/**
 * The cache's write-through: a reconcile reads its own writes, the watch's echo of them changes
 * nothing, and the cache never goes back to an older version.
 */
import { expect } from 'chai';
import { Store } from '../../src/runtime/store.ts';

interface Obj {
  metadata: { name: string; namespace: string; resourceVersion: string };
  value: string;
}
const obj = (rv: string, value = rv): Obj => ({
  metadata: { name: 'o', namespace: 'n', resourceVersion: rv },
  value,
});

describe('the cache', () => {
  it('indexes objects and finds them by index', () => {
    const store = new Store<Obj>({ byValue: (o) => [o.value] });
    store.put(obj('1', 'a'));
    expect(store.byIndex('byValue', 'a').map((o) => o.metadata.resourceVersion)).to.deep.equal(['1']);
    store.put(obj('2', 'b'));
    expect(store.byIndex('byValue', 'a')).to.deep.equal([]);
    expect(store.byIndex('byValue', 'b')).to.have.length(1);
  });

  it('writes through only from the version it holds, and ignores the echo', () => {
    const store = new Store<Obj>();
    store.put(obj('1'));
    expect(store.writeThrough(obj('2'), '1')).to.equal(true);
    expect(store.get('n/o')?.value).to.equal('2');
    expect(store.observe(obj('2'))).to.equal(undefined);
    expect(store.get('n/o')?.value).to.equal('2');
  });

  it('does not write through when the cache moved on meanwhile', () => {
    const store = new Store<Obj>();
    store.put(obj('1'));
    store.observe(obj('3')); // someone's newer version arrived while the write was in flight
    expect(store.writeThrough(obj('2'), '1')).to.equal(false);
    expect(store.get('n/o')?.value).to.equal('3');
  });

  it('never goes back when the watch delivers an older own write after a newer one', () => {
    const store = new Store<Obj>();
    store.put(obj('1'));
    store.writeThrough(obj('2'), '1');
    store.writeThrough(obj('3'), '2');
    expect(store.observe(obj('2'))).to.equal(undefined);
    expect(store.get('n/o')?.value).to.equal('3');
    expect(store.observe(obj('3'))).to.equal(undefined);
    // Then someone else's change is applied, and reported.
    expect(store.observe(obj('4'))).to.deep.equal({ old: obj('3') });
    expect(store.get('n/o')?.value).to.equal('4');
  });

  it('reports a first sighting as added and a foreign change as updated', () => {
    const store = new Store<Obj>();
    expect(store.observe(obj('1'))).to.deep.equal({ old: null });
    expect(store.observe(obj('2'))).to.deep.equal({ old: obj('1') });
  });

  it('writes a create through only if the cache has no such object', () => {
    const store = new Store<Obj>();
    expect(store.writeThrough(obj('1'), undefined)).to.equal(true);
    expect(store.writeThrough(obj('5'), undefined)).to.equal(false);
  });

  it('deletes through only from the version it holds', () => {
    const store = new Store<Obj>();
    store.put(obj('1'));
    store.deleteThrough('n/o', '0');
    expect(store.get('n/o')).not.to.equal(undefined);
    store.deleteThrough('n/o', '1');
    expect(store.get('n/o')).to.equal(undefined);
  });

  it('forgets written-through versions after a relist', () => {
    const store = new Store<Obj>();
    store.put(obj('1'));
    store.writeThrough(obj('2'), '1');
    store.forgetWrites();
    expect(store.observe(obj('2'))).to.deep.equal({ old: obj('2') });
  });
});
