{#- List a cluster's nodes by role, after checking its pillar.
    salt-run state.orch orch.inventory pillar='{"cluster": "lab"}'            #}
{%- set cluster = pillar.get('cluster') %}

validate_pillar:
  salt.runner:
    - name: leapfrog.validate
{%- if cluster %}
    - cluster: {{ cluster | json }}
{%- endif %}

inventory:
  salt.runner:
    - name: leapfrog.inventory
{%- if cluster %}
    - cluster: {{ cluster | json }}
{%- endif %}
    - require:
      - salt: validate_pillar
