"""The elements of every nftables set in a network namespace, for the
script tests that check what bantamd put in the kernel.

  sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'testing'))
  from nft_sets import set_elements
"""
import json
import subprocess


def set_elements(ns):
    """Every element of every set in namespace `ns`, as text: an address
    ('192.0.2.1'), or a prefix in CIDR form ('2001:db8::/64'). Empty when
    the namespace has no ruleset or nft fails."""
    p = subprocess.run(['ip', 'netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
    out = p.stdout.decode(errors='replace')
    elems = set()
    try:
        objs = json.loads(out)['nftables'] if out.strip() else []
    except ValueError:
        return elems
    for o in objs:
        s = o.get('set')
        if not s:
            continue
        for e in s.get('elem', []):
            if isinstance(e, dict):
                e = e.get('elem', {}).get('val', e)
            if isinstance(e, dict) and 'prefix' in e:
                e = '%s/%s' % (e['prefix']['addr'], e['prefix']['len'])
            elems.add(str(e))
    return elems
