"""``m6t-helper``: the privileged service that owns the tunnel, the platform backend and the config.

Start-up order matters and is fixed (:meth:`service.HelperService.start`):

1. undo what a dead run left behind (the journal), *before anything else* touches the network;
2. load the configuration (a broken file stops the helper with one clear line);
3. run the host checks (TUN driver, IPv6, interface name) and keep their findings for ``status``;
4. start the client driver behind a journaling backend, and the control API socket;
5. bring the tunnel up if the user last wanted it up (or, on a first run, if ``helper.autoconnect``).

One module per reason to change: :mod:`~m6t.client.helper.service` (life cycle and the control API's
requests), :mod:`~m6t.client.helper.transaction` (configuration changes), :mod:`~m6t.client.helper.persistence`
(the up/down wish), :mod:`~m6t.client.helper.entry` (command line, daemon); what goes on the wire is
:mod:`m6t.client.api.wire`'s business.
"""
