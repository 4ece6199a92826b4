{#- What the lab's starters learn only at run time (sockets, ports, generated passwords,
    venv paths), as a secrets store would hand it out: <run>/pillar/all.json for every
    node, then <run>/pillar/<minion id>.json, merged. #}
{%- from 'lab_dir.jinja' import run %}
{%- set ns = namespace(merged={}) %}
{%- for name in ['all', opts.id] %}
{%-   set path = run ~ '/pillar/' ~ name ~ '.json' %}
{%-   if salt['file.file_exists'](path) %}
{%-     set ns.merged = salt['slsutil.merge'](ns.merged, salt['file.read'](path) | load_json) %}
{%-   endif %}
{%- endfor %}
{{ ns.merged | json }}
