// Drives banksim with the npm SDK `wechatpay-axios-plugin` (nobody here wrote it).
// Path parameters go through the SDK's `_name_` placeholders (its documented way for
// values with capitals). Only `baseURL` (a documented axios option of the SDK's constructor) points at banksim.
// Usage: node wechatpay_axios_plugin.js <phase> <settings.json>
//   phase "create": create a NATIVE order and query it (NOTPAY); prints JSON
//   phase "verify": verify + decrypt the notification in settings.notification with the
//                   SDK's own Rsa/AesGcm and query by out_trade_no and transaction_id
'use strict';
const { readFileSync } = require('fs');
const { Wechatpay, Rsa, Formatter, Aes } = require('wechatpay-axios-plugin');

const [phase, file] = process.argv.slice(2);
const s = JSON.parse(readFileSync(file, 'utf8'));
const wxpay = new Wechatpay({
  baseURL: s.base_url,
  mchid: s.mchid,
  serial: s.merchant_serial,
  privateKey: readFileSync(s.private_key_file),
  certs: { [s.platform_certificate_serial]: s.platform_certificate_pem },
});

function fail(where, err) {
  const r = err && err.response;
  console.log(JSON.stringify({ ok: false, where, message: String(err && err.message),
    status: r && r.status, data: r && r.data }));
  process.exit(1);
}

async function create() {
  const created = await wxpay.v3.pay.transactions.native.post({
    appid: s.appid, mchid: s.mchid, description: '余额充值', out_trade_no: s.out_trade_no,
    notify_url: s.notify_url, amount: { total: s.total, currency: 'CNY' },
  }).catch((e) => fail('create', e));
  const queried = await wxpay.v3.pay.transactions['out-trade-no']._out_trade_no_
    .get({ params: { mchid: s.mchid }, out_trade_no: s.out_trade_no }).catch((e) => fail('query', e));
  console.log(JSON.stringify({ ok: true, code_url: created.data.code_url,
    trade_state: queried.data.trade_state }));
}

async function verify() {
  const { headers, body } = s.notification;
  const message = Formatter.response(headers['wechatpay-timestamp'], headers['wechatpay-nonce'], body);
  const key = Rsa.from(s.platform_certificate_pem, Rsa.KEY_TYPE_PUBLIC);
  const verified = Rsa.verify(message, headers['wechatpay-signature'], key);
  const tampered = Rsa.verify(message.replace('"id":"', '"id":"X'), headers['wechatpay-signature'], key);
  const { resource } = JSON.parse(body);
  const plain = JSON.parse(Aes.AesGcm.decrypt(resource.ciphertext, s.apiv3_key, resource.nonce,
    resource.associated_data));
  const byNo = await wxpay.v3.pay.transactions['out-trade-no']._out_trade_no_
    .get({ params: { mchid: s.mchid }, out_trade_no: s.out_trade_no }).catch((e) => fail('query', e));
  const byId = await wxpay.v3.pay.transactions.id._transaction_id_
    .get({ params: { mchid: s.mchid }, transaction_id: plain.transaction_id }).catch((e) => fail('query by id', e));
  console.log(JSON.stringify({ ok: true, verified, tampered, resource: plain,
    trade_state: byNo.data.trade_state, by_id: byId.data.out_trade_no }));
}

(phase === 'create' ? create() : verify()).catch((e) => fail(phase, e));
